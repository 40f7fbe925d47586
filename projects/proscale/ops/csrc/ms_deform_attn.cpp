// Copyright (c) The proscale Authors. All rights reserved.
// Registers the ops of proscale._ext with the PyTorch dispatcher, so they
// are called as torch.ops.proscale.<name> and show up in torch.jit traces.
#include <ATen/ATen.h>
#include <Python.h>
#include <torch/library.h>

namespace proscale {

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value,
                                      const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index,
                                      const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights);

at::Tensor ms_deform_attn_points_forward_cpu(
    const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& reference_points,
    const at::Tensor& sampling_offsets, const at::Tensor& attention_logits);

}  // namespace proscale

// Multi-scale deformable attention, forward. Shapes:
// value (bs, num_keys, num_heads, channels), spatial_shapes (num_levels, 2),
// level_start_index (num_levels), sampling_locations and sampling_offsets
// (bs, num_queries, num_heads, num_levels, num_points, 2),
// attention_weights (bs, num_queries, num_heads, num_levels, num_points),
// reference_points (bs, num_queries, num_levels, 2), attention_logits
// (bs, num_queries, num_heads, num_levels * num_points); output
// (bs, num_queries, num_heads * channels).
// ms_deform_attn_points_forward samples at reference_points +
// sampling_offsets / (w, h) with the weights softmax(attention_logits).
TORCH_LIBRARY(proscale, m) {
  m.def(
      "ms_deform_attn_forward(Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor sampling_locations, "
      "Tensor attention_weights) -> Tensor");
  m.def(
      "ms_deform_attn_points_forward(Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor reference_points, "
      "Tensor sampling_offsets, Tensor attention_logits) -> Tensor");
}

TORCH_LIBRARY_IMPL(proscale, CPU, m) {
  m.impl("ms_deform_attn_forward", &proscale::ms_deform_attn_forward_cpu);
  m.impl("ms_deform_attn_points_forward",
         &proscale::ms_deform_attn_points_forward_cpu);
}

// Importing proscale._ext loads the library, which runs the registrations
// above; the Python module itself is empty.
static PyModuleDef ext_module = {PyModuleDef_HEAD_INIT, "_ext",
                                 "C++ ops of proscale (torch.ops.proscale)",
                                 -1, nullptr};

PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&ext_module); }
