// The periodic task admin form: show the chosen crontab in words under its field.
// (django-celery-beat does this in an inline script, which the Content-Security-Policy
// refuses; templates/admin/djcelery/change_periodictask_form.html loads this instead.)
(function ($) {
  "use strict";
  var readableCrontabs = JSON.parse(document.getElementById("readable-crontabs").textContent);
  var originalHelp = JSON.parse(document.getElementById("crontab-help-text").textContent);
  var showTranslation = function (additional) {
    var help = $(".field-crontab .help");
    help.text(originalHelp);
    help.append(document.createElement("br"));
    help.append(document.createTextNode("Translation: " + additional));
  };
  $(".field-crontab_translation").hide();
  $(".field-crontab").change(function () {
    showTranslation(readableCrontabs[$("#id_crontab").val()]);
  });
})(django.jQuery);
