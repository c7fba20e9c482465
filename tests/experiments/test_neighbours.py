"""The section 7 command line on the shared tiny T5X checkpoint (its embedding table only)."""
import numpy as np

from experiments import neighbours
from tests.conftest import shared_path


def test_neighbours_command_reads_a_t5x_embedding_table(tmp_path, capsys):
    ckpt = shared_path("t5", "t5x_t5_1_1_tiny", "checkpoint_3")
    vocab = shared_path("t5", "spiece.model")
    table = np.load(shared_path("t5", "tiny_embeddings_32128x4.npy"))
    np.testing.assert_array_equal(neighbours.load_embeddings(str(ckpt)), table)
    sp = neighbours.load_vocabulary(str(vocab))
    true_id = sp.piece_to_id("▁True")
    prompt = tmp_path / "p.npy"
    np.save(prompt, table[[true_id, 100]])
    assert neighbours.main(["--prompt", str(prompt), "--checkpoint", str(ckpt), "--vocab", str(vocab),
                            "--labels", "True", "-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("   0: '▁True' (1.00)")
    assert "at its own position: True (rank 0)" in out[2]
