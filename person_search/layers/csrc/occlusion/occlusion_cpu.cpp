// Multi-granularity occlusion (MGOFE "MGRO") on CPU. See occlusion_common.h for the
// pixel, cell, overlap and random-number conventions shared with the CUDA kernel.
//
// Steps: (1) decide the covered cells of every (level, box); (2) per-image per-channel means
// if filling with the mean (rows summed left to right in double, then rows top to bottom, so
// the CUDA kernel can reproduce the exact value); (3) per (level, image, channel) plane, in
// parallel: copy the input plane into the output, fill the covered cells of all boxes, then
// copy the input back where a visible cell of a box meets a covered cell (visible cells take
// precedence). The fill value depends only on the pixel, never on the box, so the order of
// the boxes does not matter.
//
// The op is bound by writing its (L, N, C, H, W) output, and on Linux most of that time is
// the kernel mapping and zeroing fresh 4 KiB pages on first touch. The output is therefore
// advised as transparent-huge-page memory before it is written (a hint: where the kernel
// does not give huge pages, nothing changes but the speed).

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "occlusion/occlusion_checks.h"
#include "occlusion/occlusion_common.h"

namespace person_search {
namespace occlusion {
namespace {

// Sum of a plane in double: every row summed left to right, the row sums added top to
// bottom (the order of the CUDA kernel and the reference). Rows are summed kRows at a time
// in independent accumulators, which keeps that order while hiding the add latency.
template <typename T>
double plane_sum(const T* plane, int64_t height, int64_t width) {
  constexpr int64_t kRows = 8;
  double total = 0.0;
  int64_t y = 0;
  for (; y + kRows <= height; y += kRows) {
    double acc[kRows] = {};
    const T* rows = plane + y * width;
    for (int64_t x = 0; x < width; ++x) {
      for (int64_t r = 0; r < kRows; ++r) {
        acc[r] += static_cast<double>(rows[r * width + x]);
      }
    }
    for (int64_t r = 0; r < kRows; ++r) {
      total += acc[r];
    }
  }
  for (; y < height; ++y) {
    double row = 0.0;
    for (int64_t x = 0; x < width; ++x) {
      row += static_cast<double>(plane[y * width + x]);
    }
    total += row;
  }
  return total;
}

// uint8: every partial sum of the double order above is an integer below 2^53, hence exact,
// so an integer sum (vectorised) gives the same value.
template <>
double plane_sum<uint8_t>(const uint8_t* plane, int64_t height, int64_t width) {
  uint64_t total = 0;
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* row = plane + y * width;
    uint64_t row_sum = 0;
    constexpr int64_t kChunk = 1 << 20;  // 255 * 2^20 < 2^32: no overflow of a chunk sum
    for (int64_t x0 = 0; x0 < width; x0 += kChunk) {
      const int64_t x1 = std::min(width, x0 + kChunk);
      uint32_t chunk = 0;
      for (int64_t x = x0; x < x1; ++x) {
        chunk += row[x];
      }
      row_sum += chunk;
    }
    total += row_sum;
  }
  return static_cast<double>(total);
}

template <typename T>
std::vector<T> channel_means(const T* images, int64_t planes, int64_t height, int64_t width) {
  std::vector<T> means(planes);
  at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const double total = plane_sum(images + p * height * width, height, width);
      means[p] = PixelCast<T>::from_mean(total / static_cast<double>(height * width));
    }
  });
  return means;
}

// Asks the kernel to back the 2 MiB-aligned interior of [data, data + bytes) with
// transparent huge pages (Linux, THP in "madvise" or "always" mode). Must run before the
// memory is first written. A hint only: failures are ignored, the results are the same.
void advise_huge_pages(void* data, size_t bytes) {
#ifdef __linux__
  constexpr uintptr_t kHuge = uintptr_t{1} << 21;
  if (bytes < 2 * kHuge) {
    return;
  }
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) {
    madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
#else
  (void)data;
  (void)bytes;
#endif
}

// Pixel rectangles of the non-empty cells of the boxes of one image at one level, split into
// covered and visible cells.
void collect_cells(const double* boxes, const bool* masks, const std::vector<int64_t>& boxes_n,
                   int64_t l, int64_t rows, int64_t cols, int64_t max_cells, int64_t num_boxes,
                   int64_t height, int64_t width, std::vector<PixelBox>& covered,
                   std::vector<PixelBox>& visible) {
  covered.clear();
  visible.clear();
  for (const int64_t b : boxes_n) {
    const PixelBox p = box_pixels(boxes + b * 5, height, width);
    const bool* mask = masks + (l * num_boxes + b) * max_cells;
    for (int64_t cell = 0; cell < rows * cols; ++cell) {
      const PixelBox r = cell_pixels(p, rows, cols, cell);
      if (r.x1 > r.x0 && r.y1 > r.y0) {
        (mask[cell] ? covered : visible).push_back(r);
      }
    }
  }
}

template <typename T>
void fill_cells(const T* in, T* out, const double* boxes, const bool* masks,
                const std::vector<std::vector<int64_t>>& boxes_of_image,
                const std::vector<int64_t>& rows, const std::vector<int64_t>& cols,
                int64_t max_cells, int64_t num_boxes, int64_t num_images, int64_t channels,
                int64_t height, int64_t width, int64_t fill_mode, T constant,
                const std::vector<T>& means, double noise_low, double noise_high,
                uint64_t seed) {
  const int64_t levels = static_cast<int64_t>(rows.size());
  const int64_t plane_size = height * width;
  at::parallel_for(0, levels * num_images * channels, 1, [&](int64_t begin, int64_t end) {
    std::vector<PixelBox> covered, visible, restore;
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t c = plane % channels;
      const int64_t n = (plane / channels) % num_images;
      const int64_t l = plane / (channels * num_images);
      T* dst = out + plane * plane_size;
      const T* src = in + (n * channels + c) * plane_size;
      collect_cells(boxes, masks, boxes_of_image[n], l, rows[l], cols[l], max_cells, num_boxes,
                    height, width, covered, visible);
      // Only where a visible cell meets a covered one can a visible pixel have been filled:
      // those intersections are copied back from the input after the fills.
      restore.clear();
      for (const PixelBox& v : visible) {
        for (const PixelBox& r : covered) {
          const PixelBox i{std::max(v.x0, r.x0), std::max(v.y0, r.y0), std::min(v.x1, r.x1),
                           std::min(v.y1, r.y1)};
          if (i.x0 < i.x1 && i.y0 < i.y1) {
            restore.push_back(i);
          }
        }
      }
      const T value = fill_mode == kFillMean ? means[n * channels + c] : constant;
      const uint64_t noise_prefix =
          counter_hash_prefix(seed, kNoiseStream, static_cast<uint64_t>(l),
                              static_cast<uint64_t>(n), static_cast<uint64_t>(c));
      // One pass over the rows: copy the input row, fill its covered spans, restore its
      // visible ones, while the row is in cache; each output row is written to memory once.
      for (int64_t y = 0; y < height; ++y) {
        const T* in_row = src + y * width;
        T* line = dst + y * width;
        std::memcpy(line, in_row, static_cast<size_t>(width) * sizeof(T));
        for (const PixelBox& r : covered) {
          if (y < r.y0 || y >= r.y1) {
            continue;
          }
          if (fill_mode == kFillNoise) {
            for (int64_t x = r.x0; x < r.x1; ++x) {
              const uint64_t h = splitmix64(noise_prefix ^ static_cast<uint64_t>(y * width + x));
              line[x] = PixelCast<T>::from_noise(h, noise_low, noise_high);
            }
          } else {
            std::fill(line + r.x0, line + r.x1, value);
          }
        }
        for (const PixelBox& r : restore) {
          if (y >= r.y0 && y < r.y1) {
            std::memcpy(line + r.x0, in_row + r.x0, static_cast<size_t>(r.x1 - r.x0) * sizeof(T));
          }
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> occlusion_cpu(const at::Tensor& images,
                                                 const at::Tensor& boxes,
                                                 at::IntArrayRef grid_rows,
                                                 at::IntArrayRef grid_cols, double cell_prob,
                                                 int64_t fill_mode, double fill_value,
                                                 double noise_low, double noise_high,
                                                 int64_t seed) {
  constexpr const char* name = "multi_granularity_occlusion";
  const int64_t max_cells = check_arguments(images, boxes, grid_rows, grid_cols, cell_prob,
                                            fill_mode, fill_value, noise_low, noise_high);
  const int64_t levels = static_cast<int64_t>(grid_rows.size());
  const int64_t num_images = images.size(0), channels = images.size(1);
  const int64_t height = images.size(2), width = images.size(3);
  const int64_t num_boxes = boxes.size(0);
  const std::vector<int64_t> rows(grid_rows.begin(), grid_rows.end());
  const std::vector<int64_t> cols(grid_cols.begin(), grid_cols.end());
  const uint64_t useed = static_cast<uint64_t>(seed);

  const at::Tensor boxes_d = boxes.to(at::kDouble).contiguous();
  const double* box_data = boxes_d.data_ptr<double>();
  check_boxes(box_data, num_boxes, num_images);
  std::vector<std::vector<int64_t>> boxes_of_image(num_images);
  for (int64_t b = 0; b < num_boxes; ++b) {
    boxes_of_image[static_cast<int64_t>(box_data[b * 5])].push_back(b);
  }

  at::Tensor masks = at::zeros({levels, num_boxes, max_cells}, images.options().dtype(at::kBool));
  bool* mask_data = masks.data_ptr<bool>();
  at::parallel_for(0, levels * num_boxes, 64, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t l = task / num_boxes, b = task % num_boxes;
      const double* box = box_data + b * 5;
      const PixelBox p = box_pixels(box, height, width);
      decide_cells(p, rows[l], cols[l], cell_prob, useed, l, static_cast<int64_t>(box[0]), b,
                   mask_data + task * max_cells);
    }
  });

  at::Tensor out = at::empty({levels, num_images, channels, height, width}, images.options());
  if (out.numel() == 0) {
    return std::make_tuple(out, masks);
  }
  advise_huge_pages(out.data_ptr(), static_cast<size_t>(out.nbytes()));
  if (num_boxes == 0) {
    out.copy_(images.unsqueeze(0).expand_as(out));
    return std::make_tuple(out, masks);
  }
  const at::Tensor images_c = images.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND(at::kByte, images.scalar_type(), name, [&] {
    std::vector<scalar_t> means;
    if (fill_mode == kFillMean) {
      means = channel_means(images_c.data_ptr<scalar_t>(), num_images * channels, height, width);
    }
    fill_cells<scalar_t>(images_c.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), box_data,
                         mask_data, boxes_of_image, rows, cols, max_cells, num_boxes,
                         num_images, channels, height, width, fill_mode,
                         static_cast<scalar_t>(fill_value), means, noise_low, noise_high, useed);
  });
  return std::make_tuple(out, masks);
}

}  // namespace
}  // namespace occlusion

TORCH_LIBRARY_IMPL(person_search, CPU, m) {
  m.impl("multi_granularity_occlusion", &occlusion::occlusion_cpu);
}

}  // namespace person_search
