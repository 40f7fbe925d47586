// Copyright (c) OpenMMLab. All rights reserved.
// Fused multi-scale deformable attention on the CPU (forward).
//
// One pass over the queries: each (batch, query) samples every head, level
// and point bilinearly from the value maps and accumulates the samples,
// weighted by the attention weights, straight into the output, so no
// per-level tensor is materialised. Sampling follows
// F.grid_sample(mode='bilinear', padding_mode='zeros', align_corners=False),
// as mmcv's multi_scale_deformable_attn_pytorch and its CUDA kernel do.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

namespace proscale {
namespace {

// Queries per task of the thread pool: one query costs
// heads * levels * points * 4 * channels multiply-adds (12k for Mask2Former).
constexpr int64_t kGrainSize = 16;

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

template <typename scalar_t, int64_t kChannels>
void ms_deform_attn_forward_kernel(
    const scalar_t* value, const int64_t* spatial_shapes,
    const int64_t* level_start_index, const scalar_t* sampling_locations,
    const scalar_t* attention_weights, scalar_t* output, int64_t batch_size,
    int64_t num_keys, int64_t num_queries, int64_t num_heads,
    int64_t channels, int64_t num_levels, int64_t num_points) {
  // A key of value is a row of num_heads * channels scalars.
  const int64_t key_stride = num_heads * channels;
  const int64_t samples = num_levels * num_points;
  at::parallel_for(
      0, batch_size * num_queries, kGrainSize,
      [&](int64_t begin, int64_t end) {
        for (int64_t bq = begin; bq < end; ++bq) {
          const scalar_t* value_b =
              value + (bq / num_queries) * num_keys * key_stride;
          for (int64_t h = 0; h < num_heads; ++h) {
            const int64_t bqh = bq * num_heads + h;
            const scalar_t* loc = sampling_locations + bqh * samples * 2;
            const scalar_t* weight = attention_weights + bqh * samples;
            scalar_t* out = output + bqh * channels;
            std::fill(out, out + channels, scalar_t(0));
            for (int64_t l = 0; l < num_levels; ++l) {
              const int64_t height = spatial_shapes[2 * l];
              const int64_t width = spatial_shapes[2 * l + 1];
              const scalar_t* value_l =
                  value_b + level_start_index[l] * key_stride + h * channels;
              for (int64_t p = 0; p < num_points; ++p, loc += 2, ++weight) {
                // Pixel coordinates with align_corners=False.
                const scalar_t x = loc[0] * width - scalar_t(0.5);
                const scalar_t y = loc[1] * height - scalar_t(0.5);
                // Also false for NaN; all four taps are outside otherwise.
                if (!(x > -1 && y > -1 && x < width && y < height)) {
                  continue;
                }
                const scalar_t x_floor = std::floor(x);
                const scalar_t y_floor = std::floor(y);
                const int64_t x0 = static_cast<int64_t>(x_floor);
                const int64_t y0 = static_cast<int64_t>(y_floor);
                const scalar_t lx = x - x_floor, ly = y - y_floor;
                const scalar_t hx = 1 - lx, hy = 1 - ly;
                const scalar_t w = *weight;
                const bool left = x0 >= 0, right = x0 + 1 < width;
                const auto tap = [&](int64_t yy, int64_t xx, scalar_t tw) {
                  axpy<scalar_t, kChannels>(
                      out, value_l + (yy * width + xx) * key_stride, w * tw,
                      channels);
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
            }
          }
        }
      });
}

}  // namespace

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value,
                                      const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index,
                                      const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights) {
  TORCH_CHECK(value.dim() == 4,
              "value must be (bs, num_keys, num_heads, channels), got ",
              value.sizes());
  TORCH_CHECK(sampling_locations.dim() == 6,
              "sampling_locations must be (bs, num_queries, num_heads, "
              "num_levels, num_points, 2), got ",
              sampling_locations.sizes());
  const int64_t batch_size = value.size(0), num_keys = value.size(1);
  const int64_t num_heads = value.size(2), channels = value.size(3);
  const int64_t num_queries = sampling_locations.size(1);
  const int64_t num_levels = sampling_locations.size(3);
  const int64_t num_points = sampling_locations.size(4);
  TORCH_CHECK(sampling_locations.size(0) == batch_size &&
                  sampling_locations.size(2) == num_heads &&
                  sampling_locations.size(5) == 2,
              "sampling_locations ", sampling_locations.sizes(),
              " does not match value ", value.sizes());
  TORCH_CHECK(attention_weights.sizes() ==
                  sampling_locations.sizes().slice(0, 5),
              "attention_weights must be ",
              sampling_locations.sizes().slice(0, 5), ", got ",
              attention_weights.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(0) ==
                  num_levels && spatial_shapes.size(1) == 2,
              "spatial_shapes must be (", num_levels, ", 2), got ",
              spatial_shapes.sizes());
  TORCH_CHECK(level_start_index.numel() == num_levels,
              "level_start_index must have ", num_levels, " elements, got ",
              level_start_index.numel());
  for (const auto& t : {value, spatial_shapes, level_start_index,
                        sampling_locations, attention_weights}) {
    TORCH_CHECK(t.device().is_cpu(), "all tensors must be on the CPU");
  }
  TORCH_CHECK(sampling_locations.scalar_type() == value.scalar_type() &&
                  attention_weights.scalar_type() == value.scalar_type(),
              "value, sampling_locations and attention_weights must have "
              "the same dtype");

  const auto shapes = spatial_shapes.to(at::kLong).contiguous();
  const auto starts = level_start_index.to(at::kLong).contiguous();
  const auto* shape_data = shapes.data_ptr<int64_t>();
  const auto* start_data = starts.data_ptr<int64_t>();
  for (int64_t l = 0; l < num_levels; ++l) {
    TORCH_CHECK(shape_data[2 * l] >= 0 && shape_data[2 * l + 1] >= 0 &&
                    start_data[l] >= 0 &&
                    start_data[l] + shape_data[2 * l] * shape_data[2 * l + 1] <=
                        num_keys,
                "level ", l, " of spatial_shapes/level_start_index lies "
                "outside the ", num_keys, " keys of value");
  }

  const auto value_c = value.contiguous();
  const auto loc_c = sampling_locations.contiguous();
  const auto weight_c = attention_weights.contiguous();
  // Every query zeroes its own output (while it is in cache).
  auto output =
      at::empty({batch_size, num_queries, num_heads * channels},
                value.options());
  AT_DISPATCH_FLOATING_TYPES(
      value.scalar_type(), "ms_deform_attn_forward_cpu", [&] {
        // 32 channels per head: Mask2Former, Deformable DETR and DINO.
        const auto kernel = channels == 32
                                ? ms_deform_attn_forward_kernel<scalar_t, 32>
                                : ms_deform_attn_forward_kernel<scalar_t, 0>;
        kernel(value_c.data_ptr<scalar_t>(), shape_data, start_data,
               loc_c.data_ptr<scalar_t>(), weight_c.data_ptr<scalar_t>(),
               output.data_ptr<scalar_t>(), batch_size, num_keys,
               num_queries, num_heads, channels, num_levels, num_points);
      });
  return output;
}

}  // namespace proscale
