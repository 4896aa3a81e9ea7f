"""OpenAPI description of the API key authentication."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "core.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "Workspace API key, as `Authorization: Bearer <key>` "
                               "or `X-API-Key: <key>`."}
