"""`field__any=[...]`: the values as one array parameter, `field = ANY(%s)`, on PostgreSQL.

`field__in` writes one placeholder per value, and psycopg converts the query and every
value one by one on each call: for the thousand ids of a batch (an exit fence, a cancel)
that conversion cost more than PostgreSQL's work on the statement. Other databases get
the plain IN.
"""
from __future__ import annotations

from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db.models import Field, ForeignObject, Lookup
from django.db.models.lookups import In


class AnyOf(Lookup):
    lookup_name = "any"
    prepare_rhs = False

    def get_db_prep_lookup(self, value: Any, connection: Any) -> Any:
        field = self.lhs.output_field
        return "%s", [[field.get_db_prep_value(one, connection, prepared=False)
                       for one in value]]

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        return In(self.lhs, list(self.rhs)).as_sql(compiler, connection)

    def as_postgresql(self, compiler: Any, connection: Any) -> Any:
        if not self.rhs:
            raise EmptyResultSet
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} = ANY({rhs})", [*lhs_params, *rhs_params]


Field.register_lookup(AnyOf)
ForeignObject.register_lookup(AnyOf)  # relations keep lookups of their own
