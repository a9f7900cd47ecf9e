"""Resources several domains use: one instance each, so their Definitions merge."""

from dagster_dlt import DagsterDltResource

dlt_resource = DagsterDltResource()
