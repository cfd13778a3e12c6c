// Multi-granularity occlusion (MGOFE "MGRO") on CPU. See occlusion_common.h for the
// pixel, cell and random-number conventions shared with the CUDA kernel.
//
// Steps: (1) decide the covered cells of every (level, box); (2) per-image per-channel means
// if filling with the mean (rows summed left to right in double, then rows top to bottom, so
// the CUDA kernel can reproduce the exact value); (3) copy the images into every level of
// the output; (4) fill the covered cells, in parallel over (level, image, channel) planes.
// Overlapping boxes: a pixel is filled if any covered cell of any box contains it; the fill
// value depends only on the pixel, never on the box, so the order does not matter.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>
#include <vector>

#include "occlusion/occlusion_checks.h"
#include "occlusion/occlusion_common.h"

namespace person_search {
namespace occlusion {
namespace {

template <typename T>
std::vector<T> channel_means(const T* images, int64_t planes, int64_t height, int64_t width) {
  std::vector<T> means(planes);
  at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const T* plane = images + p * height * width;
      double total = 0.0;
      for (int64_t y = 0; y < height; ++y) {
        double row = 0.0;
        for (int64_t x = 0; x < width; ++x) {
          row += static_cast<double>(plane[y * width + x]);
        }
        total += row;
      }
      means[p] = PixelCast<T>::from_mean(total / static_cast<double>(height * width));
    }
  });
  return means;
}

template <typename T>
void fill_cells(T* out, const double* boxes, const bool* masks,
                const std::vector<std::vector<int64_t>>& boxes_of_image,
                const std::vector<int64_t>& rows, const std::vector<int64_t>& cols,
                int64_t max_cells, int64_t num_boxes, int64_t num_images, int64_t channels,
                int64_t height, int64_t width, int64_t fill_mode, T constant,
                const std::vector<T>& means, double noise_low, double noise_high,
                uint64_t seed) {
  const int64_t levels = static_cast<int64_t>(rows.size());
  at::parallel_for(0, levels * num_images * channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t c = plane % channels;
      const int64_t n = (plane / channels) % num_images;
      const int64_t l = plane / (channels * num_images);
      T* dst = out + plane * height * width;
      const T value = fill_mode == kFillMean ? means[n * channels + c] : constant;
      for (const int64_t b : boxes_of_image[n]) {
        const PixelBox p = box_pixels(boxes + b * 5, height, width);
        const bool* mask = masks + (l * num_boxes + b) * max_cells;
        for (int64_t cell = 0; cell < rows[l] * cols[l]; ++cell) {
          if (!mask[cell]) {
            continue;
          }
          const PixelBox r = cell_pixels(p, rows[l], cols[l], cell);
          for (int64_t y = r.y0; y < r.y1; ++y) {
            T* line = dst + y * width;
            if (fill_mode == kFillNoise) {
              for (int64_t x = r.x0; x < r.x1; ++x) {
                const uint64_t h = counter_hash(
                    seed, kNoiseStream, static_cast<uint64_t>(l), static_cast<uint64_t>(n),
                    static_cast<uint64_t>(c), static_cast<uint64_t>(y * width + x));
                line[x] = PixelCast<T>::from_noise(h, noise_low, noise_high);
              }
            } else {
              std::fill(line + r.x0, line + r.x1, value);
            }
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
  std::vector<std::vector<int64_t>> boxes_of_image(num_images);
  for (int64_t b = 0; b < num_boxes; ++b) {
    const double* box = box_data + b * 5;
    for (int k = 0; k < 5; ++k) {
      TORCH_CHECK(std::isfinite(box[k]), name, ": box ", b, " has a non-finite value");
    }
    const int64_t n = static_cast<int64_t>(box[0]);
    TORCH_CHECK(static_cast<double>(n) == box[0] && n >= 0 && n < num_images, name, ": box ", b,
                " has image index ", box[0], ", expected an integer in [0, ", num_images, ")");
    boxes_of_image[n].push_back(b);
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
  out.copy_(images.unsqueeze(0).expand_as(out));
  if (num_boxes == 0 || out.numel() == 0) {
    return std::make_tuple(out, masks);
  }
  const at::Tensor images_c = images.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND(at::kByte, images.scalar_type(), name, [&] {
    std::vector<scalar_t> means;
    if (fill_mode == kFillMean) {
      means = channel_means(images_c.data_ptr<scalar_t>(), num_images * channels, height, width);
    }
    fill_cells<scalar_t>(out.data_ptr<scalar_t>(), box_data, mask_data, boxes_of_image, rows,
                         cols, max_cells, num_boxes, num_images, channels, height, width,
                         fill_mode, static_cast<scalar_t>(fill_value), means, noise_low,
                         noise_high, useed);
  });
  return std::make_tuple(out, masks);
}

}  // namespace
}  // namespace occlusion

TORCH_LIBRARY_IMPL(person_search, CPU, m) {
  m.impl("multi_granularity_occlusion", &occlusion::occlusion_cpu);
}

}  // namespace person_search
