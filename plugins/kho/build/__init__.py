"""The build stage: dbt models the raw tables into marts in private build schemas, the marts are audited (dbt tests,
GX suites), and only then published to the schemas agencies read (`kho.build.publish`).

`project` writes the parts of the dbt project that are derived from `kho.sources`; `dbt` runs dbt; `publish` makes
the audited marts visible in one transaction.
"""
