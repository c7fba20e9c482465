"""`python -m prompt_tuning.data.show_tasks`: lists registered tasks and prints preprocessed examples."""
import io

from prompt_tuning.data import show_tasks


def test_prints_the_default_tasks_example_as_text_and_ids(monkeypatch, tmp_path):
    monkeypatch.setenv("RECALL_WORLD_CACHE", str(tmp_path / "recall"))
    out = io.StringIO()
    assert show_tasks.show("^recall_world_record$", example=1, out=out) == 0
    text = out.getvalue()
    assert "recall world (1):\n  recall_world_record\n" in text
    assert "== recall_world_record [validation]" in text
    assert "inputs_pretokenized: query:" in text and "passage:" in text
    ids_line = next(l for l in text.splitlines() if l.startswith("  targets (") and "ids)" in l)
    assert ids_line.endswith(", 1]"), "targets end with EOS (id 1)"


def test_lists_every_family_and_rejects_bad_input(capsys):
    out = io.StringIO()
    assert show_tasks.show("rte_v102$|mrpc_v100|c4_v301_span|mrqa_squad|recall_world_rte$",
                           out=out) == 0
    text = out.getvalue()
    for family in ("superglue (1)", "glue (1)", "pretraining (1)", "mrqa (1)", "recall world (1)"):
        assert family in text, text
    assert show_tasks.main(["no_task_is_called_this"]) == 2
    assert show_tasks.main(["("]) == 2
    assert show_tasks.main(["--example=x"]) == 2
    err = capsys.readouterr().err
    assert "no registered task matches" in err and "bad regex" in err
