"""Fixtures shared by the experiments tests."""
import pytest


@pytest.fixture(scope="session")
def task_files(tmp_path_factory):
    """The recall world's task files (seed 0, the default world) in a temporary directory: <dir>/<task>/."""
    from prompt_tuning.data.recall_world import tasks as recall_tasks, world as world_lib

    out = str(tmp_path_factory.mktemp("tasks"))
    recall_tasks.write_tasks(out, world_lib.build_world(0, world_lib.DEFAULT_NUM_PEOPLE))
    return out
