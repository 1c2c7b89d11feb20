"""All SQL of the backend: tables, migrations, and one module per aggregate."""
