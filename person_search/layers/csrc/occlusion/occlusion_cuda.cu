// Multi-granularity occlusion on CUDA, bit-identical to the CPU kernel (occlusion_common.h).
//   1. one thread per (level, box) decides the covered cells;
//   2. "mean" fill: one thread per image row sums it left to right in double, then one
//      thread per (image, channel) adds the row sums top to bottom (the CPU order);
//   3. the images are copied into every level of the output;
//   4. one block per (level, box, cell) fills a covered cell. Cells of overlapping boxes may
//      write the same pixel concurrently, always with the same value (the value depends only
//      on the pixel), so the result does not depend on the order;
//   5. one block per (level, box, cell) copies the input back into a visible cell (visible
//      cells take precedence over the covered cells of overlapping boxes).
// The boxes are checked on a host copy (one small device-to-host transfer per call).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/ceil_div.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

#include "occlusion/occlusion_checks.h"
#include "occlusion/occlusion_common.h"

namespace person_search {
namespace occlusion {
namespace {

constexpr int kThreads = 256;

__global__ void decide_kernel(int64_t levels, int64_t num_boxes, int64_t max_cells,
                              int64_t num_images, int64_t height, int64_t width,
                              const int64_t* grids, const double* boxes, double cell_prob,
                              uint64_t seed, bool* masks) {
  const int64_t task = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (task >= levels * num_boxes) {
    return;
  }
  const int64_t l = task / num_boxes, b = task % num_boxes;
  const double* box = boxes + b * 5;
  const int64_t n = static_cast<int64_t>(box[0]);
  CUDA_KERNEL_ASSERT(n >= 0 && n < num_images);
  const PixelBox p = box_pixels(box, height, width);
  decide_cells(p, grids[2 * l], grids[2 * l + 1], cell_prob, seed, l, n, b,
               masks + task * max_cells);
}

template <typename T>
__global__ void row_sum_kernel(int64_t num_rows, int64_t width, const T* images,
                               double* row_sums) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (row >= num_rows) {
    return;
  }
  const T* src = images + row * width;
  double sum = 0.0;
  for (int64_t x = 0; x < width; ++x) {
    sum += static_cast<double>(src[x]);
  }
  row_sums[row] = sum;
}

template <typename T>
__global__ void mean_kernel(int64_t planes, int64_t height, int64_t width, const double* row_sums,
                            T* means) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= planes) {
    return;
  }
  double total = 0.0;
  for (int64_t y = 0; y < height; ++y) {
    total += row_sums[p * height + y];
  }
  means[p] = PixelCast<T>::from_mean(total / static_cast<double>(height * width));
}

template <typename T>
__global__ void fill_kernel(int64_t num_boxes, int64_t max_cells, int64_t num_images,
                            int64_t channels, int64_t height, int64_t width,
                            const int64_t* grids, const double* boxes, const bool* masks,
                            int64_t fill_mode, T constant, const T* means, double noise_low,
                            double noise_high, uint64_t seed, T* out) {
  const int64_t task = blockIdx.x;  // (level, box, cell)
  if (!masks[task]) {
    return;
  }
  const int64_t cell = task % max_cells;
  const int64_t b = (task / max_cells) % num_boxes;
  const int64_t l = task / (max_cells * num_boxes);
  const double* box = boxes + b * 5;
  const int64_t n = static_cast<int64_t>(box[0]);
  const PixelBox r = cell_pixels(box_pixels(box, height, width), grids[2 * l], grids[2 * l + 1],
                                 cell);
  const int64_t cw = r.x1 - r.x0, ch = r.y1 - r.y0;
  const int64_t total = channels * ch * cw;
  T* image = out + (l * num_images + n) * channels * height * width;
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
    const int64_t x = r.x0 + i % cw;
    const int64_t y = r.y0 + (i / cw) % ch;
    const int64_t c = i / (cw * ch);
    T value;
    if (fill_mode == kFillNoise) {
      const uint64_t h =
          counter_hash(seed, kNoiseStream, static_cast<uint64_t>(l), static_cast<uint64_t>(n),
                       static_cast<uint64_t>(c), static_cast<uint64_t>(y * width + x));
      value = PixelCast<T>::from_noise(h, noise_low, noise_high);
    } else if (fill_mode == kFillMean) {
      value = means[n * channels + c];
    } else {
      value = constant;
    }
    image[(c * height + y) * width + x] = value;
  }
}

// Copies the input back into the visible (non-empty, uncovered) cell of block (level, box,
// cell); runs after fill_kernel on the same stream.
template <typename T>
__global__ void restore_kernel(int64_t num_boxes, int64_t max_cells, int64_t num_images,
                               int64_t channels, int64_t height, int64_t width,
                               const int64_t* grids, const double* boxes, const bool* masks,
                               const T* in, T* out) {
  const int64_t task = blockIdx.x;  // (level, box, cell)
  const int64_t cell = task % max_cells;
  const int64_t b = (task / max_cells) % num_boxes;
  const int64_t l = task / (max_cells * num_boxes);
  const int64_t rows = grids[2 * l], cols = grids[2 * l + 1];
  if (masks[task] || cell >= rows * cols) {
    return;
  }
  const double* box = boxes + b * 5;
  const int64_t n = static_cast<int64_t>(box[0]);
  const PixelBox r = cell_pixels(box_pixels(box, height, width), rows, cols, cell);
  const int64_t cw = r.x1 - r.x0, ch = r.y1 - r.y0;
  if (cw <= 0 || ch <= 0) {
    return;
  }
  const int64_t total = channels * ch * cw;
  const T* src = in + n * channels * height * width;
  T* dst = out + (l * num_images + n) * channels * height * width;
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
    const int64_t x = r.x0 + i % cw;
    const int64_t y = r.y0 + (i / cw) % ch;
    const int64_t c = i / (cw * ch);
    const int64_t offset = (c * height + y) * width + x;
    dst[offset] = src[offset];
  }
}

std::tuple<at::Tensor, at::Tensor> occlusion_cuda(const at::Tensor& images,
                                                  const at::Tensor& boxes,
                                                  at::IntArrayRef grid_rows,
                                                  at::IntArrayRef grid_cols, double cell_prob,
                                                  int64_t fill_mode, double fill_value,
                                                  double noise_low, double noise_high,
                                                  int64_t seed) {
  constexpr const char* name = "multi_granularity_occlusion";
  const int64_t max_cells = check_arguments(images, boxes, grid_rows, grid_cols, cell_prob,
                                            fill_mode, fill_value, noise_low, noise_high);
  const c10::cuda::CUDAGuard guard(images.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t levels = static_cast<int64_t>(grid_rows.size());
  const int64_t num_images = images.size(0), channels = images.size(1);
  const int64_t height = images.size(2), width = images.size(3);
  const int64_t num_boxes = boxes.size(0);
  const uint64_t useed = static_cast<uint64_t>(seed);

  std::vector<int64_t> grid_host;
  for (int64_t l = 0; l < levels; ++l) {
    grid_host.push_back(grid_rows[l]);
    grid_host.push_back(grid_cols[l]);
  }
  const at::Tensor grids = at::tensor(grid_host, at::kLong).to(images.device());
  const at::Tensor boxes_d = boxes.to(at::kDouble).contiguous();
  const at::Tensor boxes_host = boxes_d.cpu();
  check_boxes(boxes_host.data_ptr<double>(), num_boxes, num_images);
  at::Tensor masks = at::zeros({levels, num_boxes, max_cells}, images.options().dtype(at::kBool));
  if (levels * num_boxes > 0) {
    decide_kernel<<<at::ceil_div<int64_t>(levels * num_boxes, kThreads), kThreads, 0, stream>>>(
        levels, num_boxes, max_cells, num_images, height, width, grids.data_ptr<int64_t>(),
        boxes_d.data_ptr<double>(), cell_prob, useed, masks.data_ptr<bool>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  at::Tensor out = at::empty({levels, num_images, channels, height, width}, images.options());
  out.copy_(images.unsqueeze(0).expand_as(out));
  if (num_boxes == 0 || out.numel() == 0) {
    return std::make_tuple(out, masks);
  }
  const at::Tensor images_c = images.contiguous();
  const int64_t planes = num_images * channels;
  AT_DISPATCH_FLOATING_TYPES_AND(at::kByte, images.scalar_type(), name, [&] {
    at::Tensor means = at::zeros({planes}, images.options());
    if (fill_mode == kFillMean) {
      at::Tensor row_sums = at::empty({planes * height}, images.options().dtype(at::kDouble));
      row_sum_kernel<scalar_t><<<at::ceil_div<int64_t>(planes * height, kThreads), kThreads, 0,
                                 stream>>>(planes * height, width,
                                           images_c.data_ptr<scalar_t>(),
                                           row_sums.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      mean_kernel<scalar_t><<<at::ceil_div<int64_t>(planes, kThreads), kThreads, 0, stream>>>(
          planes, height, width, row_sums.data_ptr<double>(), means.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    fill_kernel<scalar_t><<<levels * num_boxes * max_cells, kThreads, 0, stream>>>(
        num_boxes, max_cells, num_images, channels, height, width, grids.data_ptr<int64_t>(),
        boxes_d.data_ptr<double>(), masks.data_ptr<bool>(), fill_mode,
        static_cast<scalar_t>(fill_value), means.data_ptr<scalar_t>(), noise_low, noise_high,
        useed, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    restore_kernel<scalar_t><<<levels * num_boxes * max_cells, kThreads, 0, stream>>>(
        num_boxes, max_cells, num_images, channels, height, width, grids.data_ptr<int64_t>(),
        boxes_d.data_ptr<double>(), masks.data_ptr<bool>(), images_c.data_ptr<scalar_t>(),
        out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return std::make_tuple(out, masks);
}

}  // namespace
}  // namespace occlusion

TORCH_LIBRARY_IMPL(person_search, CUDA, m) {
  m.impl("multi_granularity_occlusion", &occlusion::occlusion_cuda);
}

}  // namespace person_search
