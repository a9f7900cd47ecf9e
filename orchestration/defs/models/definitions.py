import dagster as dg
from dagster_dbt import DbtCliResource

from orchestration.defs.models.assets import dbt_models
from orchestration.defs.models.project import DBT_EXECUTABLE, dbt_project

defs = dg.Definitions(
    assets=[dbt_models],
    resources={"dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)},
)
