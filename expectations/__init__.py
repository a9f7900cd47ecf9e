"""Great Expectations suites for raw and mart tables, run as Dagster asset checks.

Built with the warehouse-models capability; dbt tests already run as asset checks.
"""
