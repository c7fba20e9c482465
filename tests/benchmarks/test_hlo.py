"""The HLO readers on hand-written HLO: what counts as a matmul, a weight gradient, a baked weight."""
from benchmarks import hlo

HLO = """
HloModule jit_train_step

%fused_computation (param_0.1: f32[45,32], param_1.1: f32[45,64]) -> f32[32,64] {
  %param_0.1 = f32[45,32]{1,0} parameter(0)
  %param_1.1 = f32[45,64]{1,0} parameter(1)
  ROOT %dot.7 = f32[32,64]{1,0} dot(%param_0.1, %param_1.1), lhs_contracting_dims={0}, rhs_contracting_dims={0}, metadata={op_name="jit(train_step)/transpose(jvp(T5))/mlp/wi_0/dot_general"}
}

ENTRY %main (Arg_0.1: f32[45,32], Arg_1.2: f32[32,64], Arg_2.3: f32[3,4,15,8]) -> f32[45,64] {
  %Arg_0.1 = f32[45,32]{1,0} parameter(0)
  %Arg_1.2 = f32[32,64]{1,0} parameter(1)
  %Arg_2.3 = f32[3,4,15,8]{3,2,1,0} parameter(2)
  %constant.9 = f32[64,32]{1,0} constant({...})
  %constant.10 = f32[] constant(0)
  %dot.1 = f32[45,64]{1,0} dot(%Arg_0.1, %Arg_1.2), lhs_contracting_dims={1}, rhs_contracting_dims={0}, metadata={op_name="jit(train_step)/jvp(T5)/mlp/wi_0/dot_general"}
  %dot.2 = f32[3,4,15,15]{3,2,1,0} dot(%Arg_2.3, %Arg_2.3), lhs_batch_dims={0,1}, lhs_contracting_dims={3}, rhs_batch_dims={0,1}, rhs_contracting_dims={3}
  %cc = (f32[32,64]{1,0}, s8[1024]{0}) custom-call(%Arg_0.1, %dot.1), custom_call_target="__cublas$gemm"
  %cb = f32[2]{0} custom-call(%Arg_0.1), custom_call_target="xla_ffi_python_cpu_callback"
  ROOT %fusion = f32[32,64]{1,0} fusion(%Arg_0.1, %dot.1), kind=kOutput, calls=%fused_computation
}
"""


def test_matmul_ops_finds_dots_in_fusions_and_gemm_custom_calls_only():
    ops = {op.name: op for op in hlo.matmul_ops(HLO)}
    assert set(ops) == {"dot.7", "dot.1", "dot.2", "cc"}  # not the callback custom call, not the fusion
    assert ops["dot.7"].shape == (32, 64) and ops["dot.7"].backward
    assert not ops["dot.1"].backward
    assert ops["cc"].shape == (32, 64)


def test_weight_gradient_ops_match_either_orientation():
    found = hlo.weight_gradient_ops(HLO, [(32, 64)])
    assert {op.name for op in found} == {"dot.7", "cc"}
    assert {op.name for op in hlo.weight_gradient_ops(HLO, [(64, 32)])} == {"dot.7", "cc"}
    assert hlo.weight_gradient_ops(HLO, [(512, 384)]) == []


def test_dot_flops_reads_contracting_sizes_from_operand_shapes():
    # dot.7: 2*32*64*45; dot.1: 2*45*64*32; dot.2: 2*(3*4*15*15)*8
    assert hlo.dot_flops(HLO) == 2 * 32 * 64 * 45 + 2 * 45 * 64 * 32 + 2 * 3 * 4 * 15 * 15 * 8


def test_weight_constants_and_host_transfers():
    assert len(hlo.weight_constants(HLO, [(64, 32)])) == 1
    assert hlo.weight_constants(HLO, [(32, 64)]) == []  # only the exact stored shape is a baked weight
    assert len(hlo.host_transfer_ops(HLO)) == 1


def test_kernel_shapes_and_ambiguous_dims():
    params = {"encoder": {"relpos_bias": {"rel_embedding": _Shaped((4, 8))},
                          "layers_0": {"mlp": {"wi_0": {"kernel": _Shaped((32, 64))}}}},
              "token_embedder": {"embedding": _Shaped((96, 32))}}
    shapes = hlo.kernel_shapes(params)
    assert shapes == {"encoder/layers_0/mlp/wi_0/kernel": (32, 64), "token_embedder/embedding": (96, 32)}
    assert hlo.ambiguous_dims(shapes.values(), [45, 12]) == set()
    assert hlo.ambiguous_dims(shapes.values(), [32, 12]) == {32}


class _Shaped:
    def __init__(self, shape):
        self.shape = shape
