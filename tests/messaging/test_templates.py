"""Templates: the API with its versions and checks, the locale fallback, a preview, sends
naming a template (API and batch) recording the version, and the template's topic reaching
the pre-send policy (README.md, "Templates")."""
from __future__ import annotations

import uuid

import pytest

from core.models import AuditEntry
from messaging.models import Message, Template, TemplateVersion, Topic, TopicPreference
from messaging.templates import template_create, template_update
from tests.factories import ContactFactory, WorkspaceFactory
from tests.support.locks import behind_a_lock
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

URL = "/api/v1/templates"
VARIANTS = {"en": {"body": "Hi {{ contact.first_name }}"},
            "de": {"body": "Hallo {{ contact.first_name }}"},
            "de-CH": {"body": "Grüezi {{ contact.first_name }}"}}


def create(api, **body) -> dict:
    base = {"name": "welcome", "channel": "sms", "variants": VARIANTS, "default_locale": "en"}
    answer = api.post(URL, {**base, **body}, format="json")
    assert answer.status_code == 201, answer.json()
    return answer.json()


def send(api, **body):
    return api.post("/api/v1/messages", {"channel": "sms", **body}, format="json")


# --- the API --------------------------------------------------------------------------------

def test_every_change_of_content_makes_a_new_version(api, other_api):
    template = create(api)
    assert (template["version"], template["default_locale"], template["topic"]) == (1, "en",
                                                                                      None)
    assert template["variants"] == VARIANTS
    url = f"{URL}/{template['id']}"

    renamed = api.patch(url, {"name": "hello"}, format="json").json()
    assert (renamed["name"], renamed["version"]) == ("hello", 1)  # a name is no content
    changed = api.patch(url, {"variants": {"en": {"body": "Hey"}}}, format="json")
    assert changed.status_code == 200, changed.json()
    assert (changed.json()["version"], changed.json()["variants"]) == (2, {"en": {"body":
                                                                                  "Hey"}})
    same = api.patch(url, {"default_locale": "en"}, format="json").json()
    assert same["version"] == 2  # nothing changed, no version

    versions = api.get(f"{url}/versions").json()
    assert versions["count"] == 2
    assert [(v["version"], v["variants"]) for v in versions["results"]] == [
        (2, {"en": {"body": "Hey"}}), (1, VARIANTS)]
    assert api.get(f"{URL}?channel=sms").json()["results"][0]["id"] == template["id"]
    assert api.get(f"{URL}?channel=email").json()["results"] == []
    assert other_api.get(url).status_code == 404
    assert other_api.get(f"{url}/versions").status_code == 404
    assert other_api.get(URL).json()["results"] == []
    assert api.put(url, {"name": "x"}, format="json").status_code == 405
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404
    assert api.get(URL).json()["results"] == []
    assert TemplateVersion.objects.filter(template_id=template["id"]).count() == 2  # kept
    assert create(api, name="hello")["version"] == 1  # the name is free again
    assert AuditEntry.objects.filter(action="template.delete",
                                     target_id=template["id"]).exists()


def test_an_email_template_carries_subject_and_body(api):
    template = create(api, channel="email", name="receipt", default_locale="en", variants={
        "en": {"subject": "Your receipt, {{ contact.first_name }}",
               "html": "<p>Thanks</p>", "text": "Thanks"}})
    assert template["variants"]["en"]["subject"].startswith("Your receipt")
    missing = api.post(URL, {"name": "bare", "channel": "email", "default_locale": "en",
                             "variants": {"en": {"text": "no subject"}}}, format="json")
    assert missing.status_code == 400
    assert missing.json()["error"]["fields"] == {"variants": {"en": {
        "subject": ["This field is required."]}}}


@pytest.mark.parametrize(("body", "field", "says"), [
    ({"variants": {"english": {"body": "Hi"}}, "default_locale": "english"}, "variants",
     "not a language tag"),
    ({"variants": {"en": {"body": "Hi {{ contact.frist_name }}"}}}, "variants",
     "Unknown variable 'contact.frist_name'"),
    ({"variants": {"en": {"body": "Hi {{ nickname }}"}}}, "variants",
     "Unknown variable 'nickname'"),
    ({"variants": {"en": {"body": "Hi {{ contact.first_name|upper }}"}}}, "variants",
     "Unknown filter 'upper'"),
    ({"variants": {"en": {"body": "{% if x %}Hi{% endif %}"}}}, "variants", "Unknown tag"),
    ({"variants": {"en": {"subject": "Hi"}}}, "variants", "Not a content field"),
    ({"variants": {"en": "Hi"}}, "variants", "Expected a dictionary"),
    ({"variants": {}}, "variants", "at least one"),
    ({"default_locale": "fr"}, "default_locale", "one of the variants' locales"),
    ({"topic": "nope"}, "topic", "No such topic"),
    ({"channel": "fax"}, "channel", "not a valid choice"),
])
def test_a_bad_template_answers_400_naming_the_field_and_writes_nothing(api, body, field,
                                                                        says):
    base = {"name": "welcome", "channel": "sms", "variants": {"en": {"body": "Hi"}},
            "default_locale": "en"}
    answer = api.post(URL, {**base, **body}, format="json")
    assert answer.status_code == 400, answer.json()
    fields = answer.json()["error"]["fields"]
    assert list(fields) == [field]
    assert says in str(fields[field])
    assert not Template.objects.exists() and not TemplateVersion.objects.exists()


def test_a_bad_change_writes_no_version_and_the_channel_is_fixed(api):
    template = create(api)
    create(api, name="other")
    url = f"{URL}/{template['id']}"
    bad = api.patch(url, {"variants": {"en": {"body": "{{ contact.age }}"}}}, format="json")
    assert bad.status_code == 400 and list(bad.json()["error"]["fields"]) == ["variants"]
    assert list(api.patch(url, {"channel": "email"}, format="json").json()["error"][
        "fields"]) == ["channel"]
    assert list(api.patch(url, {"name": "other"}, format="json").json()["error"][
        "fields"]) == ["name"]
    assert TemplateVersion.objects.filter(template_id=template["id"]).count() == 1


def test_an_update_read_before_another_committed_keeps_the_others_change(workspace):
    Topic.objects.create(workspace=workspace, key="promotions", name="Promos")
    made = template_create(workspace=workspace, name="welcome", channel="sms",
                           variants=VARIANTS, default_locale="en")
    read_early = Template.objects.get(pk=made.pk)  # as the second update read it
    template_update(template=Template.objects.get(pk=made.pk),
                    changes={"variants": {"en": {"body": "Hey"}}})
    template_update(template=read_early, changes={"topic": "promotions"})
    current = Template.objects.select_related("current__topic").get(pk=made.pk).current
    assert current is not None and current.topic is not None
    assert (current.number, current.variants, current.topic.key) == (
        3, {"en": {"body": "Hey"}}, "promotions")


def _template_insert(workspace, name: str) -> tuple[str, list]:
    """Another request's insert of a template of this name (left uncommitted)."""
    return (f"INSERT INTO {Template._meta.db_table} (id, workspace_id, name, channel, "
            "created_at, updated_at) VALUES (%s, %s, %s, 'sms', now(), now())",
            [uuid.uuid4(), workspace.pk, name])


def test_a_create_racing_another_of_its_name_answers_400_naming_the_name(api, workspace):
    answer = behind_a_lock(*_template_insert(workspace, "welcome"), lambda: api.post(
        URL, {"name": "welcome", "channel": "sms", "variants": VARIANTS,
              "default_locale": "en"}, format="json"))
    assert answer.status_code == 400, answer.json()
    assert answer.json()["error"]["fields"] == {
        "name": ["A template with this name already exists."]}
    assert Template.objects.count() == 1 and not TemplateVersion.objects.exists()


def test_a_rename_racing_a_create_of_that_name_answers_400_naming_the_name(api, workspace):
    template = create(api)
    answer = behind_a_lock(*_template_insert(workspace, "hello"), lambda: api.patch(
        f"{URL}/{template['id']}", {"name": "hello", "variants": {"en": {"body": "Hey"}}},
        format="json"))
    assert answer.status_code == 400, answer.json()
    assert list(answer.json()["error"]["fields"]) == ["name"]
    assert Template.objects.get(pk=template["id"]).name == "welcome"
    assert TemplateVersion.objects.filter(template_id=template["id"]).count() == 1


# --- locales and the preview ----------------------------------------------------------------

@pytest.mark.parametrize(("locale", "chosen", "text"), [
    ("de-AT", "de", "Hallo Ada"),  # no de-AT variant: its language
    ("de-ch", "de-CH", "Grüezi Ada"),  # case does not matter
    ("de", "de", "Hallo Ada"),
    ("fr-FR", "en", "Hi Ada"),  # neither: the default
    ("", "en", "Hi Ada"),
])
def test_the_preview_falls_back_from_region_to_language_to_default(api, workspace, locale,
                                                                  chosen, text):
    template = create(api)
    contact = ContactFactory(workspace=workspace, first_name="Ada", locale=locale)
    answer = api.post(f"{URL}/{template['id']}/preview", {"contact_id": str(contact.pk)},
                      format="json")
    assert answer.status_code == 200, answer.json()
    assert answer.json() == {"version": 1, "locale": chosen, "content": {"body": text}}


def test_a_preview_renders_a_past_version_and_refuses_strangers(api, workspace):
    template = create(api)
    api.patch(f"{URL}/{template['id']}", {"variants": {"en": {"body": "Bye"}}}, format="json")
    contact = ContactFactory(workspace=workspace, first_name="Ada", locale="de")
    url = f"{URL}/{template['id']}/preview"
    old = api.post(url, {"contact_id": str(contact.pk), "version": 1}, format="json").json()
    assert (old["version"], old["content"]) == (1, {"body": "Hallo Ada"})
    now = api.post(url, {"contact_id": str(contact.pk)}, format="json").json()
    assert (now["version"], now["locale"], now["content"]) == (2, "en", {"body": "Bye"})
    stranger = ContactFactory(workspace=WorkspaceFactory())
    refused = api.post(url, {"contact_id": str(stranger.pk)}, format="json")
    assert refused.status_code == 400
    assert list(refused.json()["error"]["fields"]) == ["contact_id"]
    missing = api.post(url, {"contact_id": str(contact.pk), "version": 9}, format="json")
    assert list(missing.json()["error"]["fields"]) == ["version"]


def test_a_contact_has_a_locale(api):
    created = api.post("/api/v1/contacts", {"phone": "+14155550100", "locale": "de-AT"},
                       format="json")
    assert created.status_code == 201 and created.json()["locale"] == "de-AT"
    bad = api.post("/api/v1/contacts", {"phone": "+14155550101", "locale": "deutsch"},
                   format="json")
    assert bad.status_code == 400 and list(bad.json()["error"]["fields"]) == ["locale"]


# --- sends by template ----------------------------------------------------------------------

def test_a_send_by_template_takes_the_contacts_variant_and_records_the_version(api,
                                                                             workspace):
    template = create(api)
    de = ContactFactory(workspace=workspace, first_name="Ada", locale="de-AT")
    sent = send(api, template=template["id"], contact_id=str(de.pk))
    assert sent.status_code == 201, sent.json()
    body = sent.json()
    assert (body["template_id"], body["template_version"]) == (template["id"], 1)
    assert body["content"] == {"body": "Hallo {{ contact.first_name }}"}
    plain = send(api, body="Hi", contact_id=str(de.pk)).json()
    assert (plain["template_id"], plain["template_version"]) == (None, None)
    # Without a contact, the default variant.
    bare = send(api, template=template["id"], to="+14155550123").json()
    assert bare["content"] == {"body": "Hi {{ contact.first_name }}"}

    # Editing after the send keeps the old version (and content) on the old message.
    api.patch(f"{URL}/{template['id']}", {"variants": {"en": {"body": "v2"},
                                                       "de": {"body": "zwei"}}},
              format="json")
    again = send(api, template=template["id"], contact_id=str(de.pk)).json()
    assert (again["template_version"], again["content"]) == (2, {"body": "zwei"})
    first = api.get(f"/api/v1/messages/{body['id']}").json()
    assert (first["template_version"], first["content"]) == (
        1, {"body": "Hallo {{ contact.first_name }}"})
    assert Message.objects.get(pk=body["id"]).template_version.number == 1

    # A deleted template's messages keep their version; it can no longer be sent.
    assert api.delete(f"{URL}/{template['id']}").status_code == 204
    kept = api.get(f"/api/v1/messages/{body['id']}").json()
    assert (kept["template_id"], kept["template_version"]) == (template["id"], 1)
    refused = send(api, template=template["id"], contact_id=str(de.pk))
    assert refused.status_code == 400 and list(refused.json()["error"]["fields"]) == [
        "template"]


def test_a_batch_sends_by_template_and_refuses_it_whole_for_one_bad_item(api, workspace):
    template = create(api)
    contacts = [ContactFactory(workspace=workspace, locale=locale) for locale in ("de", "en")]
    batch = api.post("/api/v1/messages/batch", {"messages": [
        {"channel": "sms", "template": template["id"], "contact_id": str(c.pk)}
        for c in contacts]}, format="json")
    assert batch.status_code == 201, batch.json()
    assert [(m["template_version"], m["content"]["body"][:5]) for m in
            batch.json()["messages"]] == [(1, "Hallo"), (1, "Hi {{")]
    refused = api.post("/api/v1/messages/batch", {"messages": [
        {"channel": "sms", "template": template["id"], "contact_id": str(contacts[0].pk)},
        {"channel": "sms", "template": str(uuid.uuid4()), "contact_id": str(contacts[0].pk)},
    ]}, format="json")
    assert refused.status_code == 400
    assert list(refused.json()["error"]["fields"]["messages"]) == ["1"]
    assert list(refused.json()["error"]["fields"]["messages"]["1"]) == ["template"]
    assert Message.objects.count() == 2


@pytest.mark.parametrize(("body", "field"), [
    ({"body": "Hi"}, "template"),  # both a template and content
    ({"template": str(uuid.uuid4())}, "template"),  # unknown id
    ({"channel": "email"}, "channel"),  # an sms template on email
    ({"template": "not-an-id"}, "template"),
])
def test_a_bad_send_by_template_answers_400_naming_the_field(api, workspace, body, field):
    template = create(api)
    contact = ContactFactory(workspace=workspace, email="ada@example.com")
    answer = send(api, **{"template": template["id"], "contact_id": str(contact.pk), **body})
    assert answer.status_code == 400, answer.json()
    assert list(answer.json()["error"]["fields"]) == [field]
    assert not Message.objects.exists()


def test_another_workspaces_template_is_unknown(api, other_api, workspace):
    template = create(other_api)
    contact = ContactFactory(workspace=workspace)
    answer = send(api, template=template["id"], contact_id=str(contact.pk))
    assert answer.status_code == 400
    assert answer.json()["error"]["fields"] == {
        "template": ["No such template in this workspace."]}


def test_the_templates_topic_reaches_the_policy(api, workspace, stub_server, live_worker):
    workspace.settings = {"providers": {"sms": {"name": "http", "api_url": stub_server.url}}}
    workspace.save()
    promotions = Topic.objects.create(workspace=workspace, key="promotions", name="Promos")
    Topic.objects.create(workspace=workspace, key="receipts", name="Receipts")
    template = create(api, topic="promotions")
    assert template["topic"] == "promotions"
    out = ContactFactory(workspace=workspace, phone="+14155550111", locale="de")
    keen = ContactFactory(workspace=workspace, phone="+14155550112")
    TopicPreference.objects.create(contact=out, topic=promotions, channel="sms",
                                   opted_in=False)

    def post(contact, **extra):
        answer = send(api, template=template["id"], contact_id=str(contact.pk), **extra)
        assert answer.status_code == 201, answer.json()
        return answer.json()

    expected = {post(out)["id"]: ("suppressed", "preference", "promotions"),
                post(keen)["id"]: ("sent", None, "promotions"),
                # A topic the send names wins over the template's.
                post(out, topic="receipts")["id"]: ("sent", None, "receipts")}

    def final(message_id):
        return Message.objects.get(pk=message_id).status in ("sent", "suppressed")

    wait_until(lambda: all(final(mid) for mid in expected))
    for message_id, want in expected.items():
        detail = api.get(f"/api/v1/messages/{message_id}").json()
        assert (detail["status"], detail["suppressed_reason"], detail["topic"]) == want
    rendered = [m.rendered for m in Message.objects.filter(status="sent", contact=keen)]
    assert rendered == [{"body": f"Hi {keen.first_name}"}]
