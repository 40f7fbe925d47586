// Copyright (c) The proscale Authors. All rights reserved.
// Fused multi-scale deformable attention on the CPU (forward).
//
// One pass over the queries: each (batch, query) samples every head, level
// and point bilinearly from the value maps and accumulates the samples,
// weighted by the attention weights, straight into the output, so no
// per-level tensor is materialised. Sampling follows
// F.grid_sample(mode='bilinear', padding_mode='zeros', align_corners=False),
// as mmcv's multi_scale_deformable_attn_pytorch and its CUDA kernel do.
//
// Two entry points:
// - ms_deform_attn_forward_cpu takes sampling locations and attention
//   weights, like mmcv's MultiScaleDeformableAttnFunction;
// - ms_deform_attn_points_forward_cpu takes what the attention module
//   predicts: reference points, sampling offsets (in pixels of each level)
//   and attention logits, and also fuses the locations
//   (reference + offset / (w, h)) and the softmax of the logits.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace proscale {
namespace {

// Queries per task of the thread pool: one query costs
// heads * levels * points * 4 * channels multiply-adds (12k for Mask2Former).
constexpr int64_t kGrainSize = 16;

struct Sizes {
  int64_t batch_size, num_keys, num_queries, num_heads, channels, num_levels,
      num_points;
};

// out[0:channels] += weight * row[0:channels]; kChannels > 0 fixes channels
// at compile time, so the loop is unrolled and vectorised.
template <typename scalar_t, int64_t kChannels>
inline void axpy(scalar_t* __restrict__ out, const scalar_t* __restrict__ row,
                 scalar_t weight, int64_t channels) {
  const int64_t n = kChannels > 0 ? kChannels : channels;
  for (int64_t c = 0; c < n; ++c) {
    out[c] += weight * row[c];
  }
}

// Adds weight * bilinear sample of one level at normalized (x, y) to out.
// value_l points at the level's first key, for this head.
template <typename scalar_t, int64_t kChannels>
inline void sample(scalar_t* out, const scalar_t* value_l, int64_t height,
                   int64_t width, int64_t key_stride, int64_t channels,
                   scalar_t loc_x, scalar_t loc_y, scalar_t weight) {
  // Pixel coordinates with align_corners=False.
  const scalar_t x = loc_x * width - scalar_t(0.5);
  const scalar_t y = loc_y * height - scalar_t(0.5);
  // Also false for NaN; all four taps are outside otherwise.
  if (!(x > -1 && y > -1 && x < width && y < height)) {
    return;
  }
  const scalar_t x_floor = std::floor(x);
  const scalar_t y_floor = std::floor(y);
  const int64_t x0 = static_cast<int64_t>(x_floor);
  const int64_t y0 = static_cast<int64_t>(y_floor);
  const scalar_t lx = x - x_floor, ly = y - y_floor;
  const scalar_t hx = 1 - lx, hy = 1 - ly;
  const bool left = x0 >= 0, right = x0 + 1 < width;
  const auto tap = [&](int64_t yy, int64_t xx, scalar_t tap_weight) {
    axpy<scalar_t, kChannels>(out, value_l + (yy * width + xx) * key_stride,
                              weight * tap_weight, channels);
  };
  if (y0 >= 0) {
    if (left) tap(y0, x0, hy * hx);
    if (right) tap(y0, x0 + 1, hy * lx);
  }
  if (y0 + 1 < height) {
    if (left) tap(y0 + 1, x0, ly * hx);
    if (right) tap(y0 + 1, x0 + 1, ly * lx);
  }
}

// kFromPoints false: locations (bs, nq, heads, levels, points, 2) and
// weights (bs, nq, heads, levels, points).
// kFromPoints true: locations are the reference points (bs, nq, levels, 2),
// offsets (bs, nq, heads, levels, points, 2) and weights the logits.
template <typename scalar_t, int64_t kChannels, bool kFromPoints>
void forward_kernel(const scalar_t* value, const int64_t* spatial_shapes,
                    const int64_t* level_start_index,
                    const scalar_t* locations, const scalar_t* offsets,
                    const scalar_t* weights, scalar_t* output,
                    const Sizes& s) {
  // A key of value is a row of num_heads * channels scalars.
  const int64_t key_stride = s.num_heads * s.channels;
  const int64_t samples = s.num_levels * s.num_points;
  at::parallel_for(
      0, s.batch_size * s.num_queries, kGrainSize,
      [&](int64_t begin, int64_t end) {
        std::vector<scalar_t> softmax(kFromPoints ? samples : 0);
        for (int64_t bq = begin; bq < end; ++bq) {
          const scalar_t* value_b =
              value + (bq / s.num_queries) * s.num_keys * key_stride;
          for (int64_t h = 0; h < s.num_heads; ++h) {
            const int64_t bqh = bq * s.num_heads + h;
            const scalar_t* weight = weights + bqh * samples;
            if (kFromPoints) {
              // softmax as torch computes it: exp(x - max) / sum.
              const scalar_t max = *std::max_element(weight, weight + samples);
              scalar_t sum = 0;
              for (int64_t i = 0; i < samples; ++i) {
                softmax[i] = std::exp(weight[i] - max);
                sum += softmax[i];
              }
              for (int64_t i = 0; i < samples; ++i) {
                softmax[i] /= sum;
              }
              weight = softmax.data();
            }
            const scalar_t* loc =
                (kFromPoints ? offsets : locations) + bqh * samples * 2;
            scalar_t* out = output + bqh * s.channels;
            std::fill(out, out + s.channels, scalar_t(0));
            for (int64_t l = 0; l < s.num_levels; ++l) {
              const int64_t height = spatial_shapes[2 * l];
              const int64_t width = spatial_shapes[2 * l + 1];
              const scalar_t* value_l = value_b +
                                        level_start_index[l] * key_stride +
                                        h * s.channels;
              const scalar_t* ref = locations + (bq * s.num_levels + l) * 2;
              for (int64_t p = 0; p < s.num_points; ++p, loc += 2, ++weight) {
                scalar_t loc_x = loc[0], loc_y = loc[1];
                if (kFromPoints) {
                  loc_x = ref[0] + loc_x / static_cast<scalar_t>(width);
                  loc_y = ref[1] + loc_y / static_cast<scalar_t>(height);
                }
                sample<scalar_t, kChannels>(out, value_l, height, width,
                                            key_stride, s.channels, loc_x,
                                            loc_y, *weight);
              }
            }
          }
        }
      });
}

// Checks value, spatial_shapes and level_start_index against each other.
void check_value(const at::Tensor& value, const at::Tensor& spatial_shapes,
                 const at::Tensor& level_start_index, int64_t num_levels) {
  TORCH_CHECK(value.dim() == 4,
              "value must be (bs, num_keys, num_heads, channels), got ",
              value.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 &&
                  spatial_shapes.size(0) == num_levels &&
                  spatial_shapes.size(1) == 2,
              "spatial_shapes must be (", num_levels, ", 2), got ",
              spatial_shapes.sizes());
  TORCH_CHECK(level_start_index.numel() == num_levels,
              "level_start_index must have ", num_levels, " elements, got ",
              level_start_index.numel());
}

at::Tensor run_forward(bool from_points, const at::Tensor& value,
                       const at::Tensor& spatial_shapes,
                       const at::Tensor& level_start_index,
                       const at::Tensor& locations, const at::Tensor& offsets,
                       const at::Tensor& weights, const Sizes& s) {
  for (const auto& t : {value, spatial_shapes, level_start_index, locations,
                        offsets, weights}) {
    TORCH_CHECK(t.device().is_cpu(), "all tensors must be on the CPU");
  }
  for (const auto& t : {locations, offsets, weights}) {
    TORCH_CHECK(t.scalar_type() == value.scalar_type(),
                "all floating-point inputs must have the same dtype as "
                "value (", value.scalar_type(), "), got ", t.scalar_type());
  }
  const auto shapes = spatial_shapes.to(at::kLong).contiguous();
  const auto starts = level_start_index.to(at::kLong).contiguous();
  const auto* shape_data = shapes.data_ptr<int64_t>();
  const auto* start_data = starts.data_ptr<int64_t>();
  for (int64_t l = 0; l < s.num_levels; ++l) {
    TORCH_CHECK(shape_data[2 * l] >= 0 && shape_data[2 * l + 1] >= 0 &&
                    start_data[l] >= 0 &&
                    start_data[l] + shape_data[2 * l] * shape_data[2 * l + 1] <=
                        s.num_keys,
                "level ", l, " of spatial_shapes/level_start_index lies "
                "outside the ", s.num_keys, " keys of value");
  }
  const auto value_c = value.contiguous();
  const auto locations_c = locations.contiguous();
  const auto offsets_c = offsets.contiguous();
  const auto weights_c = weights.contiguous();
  // Every query zeroes its own output (while it is in cache).
  auto output = at::empty({s.batch_size, s.num_queries,
                           s.num_heads * s.channels},
                          value.options());
  AT_DISPATCH_FLOATING_TYPES(value.scalar_type(), "ms_deform_attn_cpu", [&] {
    // 32 channels per head: Mask2Former, Deformable DETR and DINO.
    const bool c32 = s.channels == 32;
    const auto kernel =
        from_points
            ? (c32 ? forward_kernel<scalar_t, 32, true>
                   : forward_kernel<scalar_t, 0, true>)
            : (c32 ? forward_kernel<scalar_t, 32, false>
                   : forward_kernel<scalar_t, 0, false>);
    kernel(value_c.data_ptr<scalar_t>(), shape_data, start_data,
           locations_c.data_ptr<scalar_t>(), offsets_c.data_ptr<scalar_t>(),
           weights_c.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), s);
  });
  return output;
}

// Sizes of a call from value and the (bs, num_queries, num_heads,
// num_levels, num_points, 2) tensor of sampling locations or offsets, with
// their shapes checked against each other.
Sizes checked_sizes(const at::Tensor& value, const at::Tensor& spatial_shapes,
                    const at::Tensor& level_start_index,
                    const at::Tensor& points, const char* name) {
  TORCH_CHECK(points.dim() == 6 && points.size(5) == 2, name,
              " must be (bs, num_queries, num_heads, num_levels, "
              "num_points, 2), got ",
              points.sizes());
  const Sizes s{value.size(0),
                value.dim() > 1 ? value.size(1) : 0,
                points.size(1),
                points.size(2),
                value.dim() > 3 ? value.size(3) : 0,
                points.size(3),
                points.size(4)};
  check_value(value, spatial_shapes, level_start_index, s.num_levels);
  TORCH_CHECK(value.size(0) == points.size(0) && value.size(2) == s.num_heads,
              name, " ", points.sizes(), " does not match value ",
              value.sizes());
  return s;
}

}  // namespace

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value,
                                      const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index,
                                      const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights) {
  const Sizes s = checked_sizes(value, spatial_shapes, level_start_index,
                                sampling_locations, "sampling_locations");
  TORCH_CHECK(attention_weights.sizes() ==
                  sampling_locations.sizes().slice(0, 5),
              "attention_weights must be ",
              sampling_locations.sizes().slice(0, 5), ", got ",
              attention_weights.sizes());
  // The offsets are not used: pass the weights as a placeholder.
  return run_forward(false, value, spatial_shapes, level_start_index,
                     sampling_locations, attention_weights,
                     attention_weights, s);
}

at::Tensor ms_deform_attn_points_forward_cpu(
    const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& reference_points,
    const at::Tensor& sampling_offsets, const at::Tensor& attention_logits) {
  const Sizes s = checked_sizes(value, spatial_shapes, level_start_index,
                                sampling_offsets, "sampling_offsets");
  TORCH_CHECK(reference_points.dim() == 4 &&
                  reference_points.size(0) == s.batch_size &&
                  reference_points.size(1) == s.num_queries &&
                  reference_points.size(2) == s.num_levels &&
                  reference_points.size(3) == 2,
              "reference_points must be (", s.batch_size, ", ",
              s.num_queries, ", ", s.num_levels, ", 2), got ",
              reference_points.sizes());
  TORCH_CHECK(attention_logits.dim() == 4 &&
                  attention_logits.sizes().slice(0, 3) ==
                      sampling_offsets.sizes().slice(0, 3) &&
                  attention_logits.size(3) == s.num_levels * s.num_points,
              "attention_logits must be (bs, num_queries, num_heads, "
              "num_levels * num_points), got ",
              attention_logits.sizes());
  return run_forward(true, value, spatial_shapes, level_start_index,
                     reference_points, sampling_offsets, attention_logits, s);
}

}  // namespace proscale
