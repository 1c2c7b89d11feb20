"""The API's typed bodies: request bodies (:mod:`.requests`) and one response-schema
module per area, declared on every JSON route so ``/api/openapi.json`` describes
what each one returns."""
