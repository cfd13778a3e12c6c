// Argument checks of multi_granularity_occlusion shared by the CPU and CUDA kernels (host).
#pragma once

#include <ATen/ATen.h>

#include <cmath>

#include "occlusion/occlusion_common.h"

namespace person_search {
namespace occlusion {

// Largest number of cells of one grid level (rows * cols).
constexpr int64_t kMaxCellsPerBox = 4096;

// Checks the arguments and returns the largest number of cells of a level.
inline int64_t check_arguments(const at::Tensor& images, const at::Tensor& boxes,
                               at::IntArrayRef grid_rows, at::IntArrayRef grid_cols,
                               double cell_prob, int64_t fill_mode, double fill_value,
                               double noise_low, double noise_high) {
  constexpr const char* name = "multi_granularity_occlusion";
  TORCH_CHECK(images.dim() == 4, name, ": images must have shape (N, C, H, W), got ",
              images.sizes());
  const auto dtype = images.scalar_type();
  TORCH_CHECK(dtype == at::kByte || dtype == at::kFloat || dtype == at::kDouble, name,
              ": images must be uint8, float32 or float64, got ", dtype);
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 5, name,
              ": boxes must have shape (B, 5) [image_index, x1, y1, x2, y2], got ",
              boxes.sizes());
  TORCH_CHECK(boxes.scalar_type() == at::kFloat || boxes.scalar_type() == at::kDouble, name,
              ": boxes must be float32 or float64, got ", boxes.scalar_type());
  TORCH_CHECK(boxes.device() == images.device(), name,
              ": boxes and images must be on the same device, got ", boxes.device(), " and ",
              images.device());
  TORCH_CHECK(!grid_rows.empty() && grid_rows.size() == grid_cols.size(), name,
              ": grid_rows and grid_cols must be non-empty and of equal length, got ",
              grid_rows.size(), " and ", grid_cols.size());
  int64_t max_cells = 0;
  for (size_t l = 0; l < grid_rows.size(); ++l) {
    TORCH_CHECK(grid_rows[l] >= 1 && grid_cols[l] >= 1, name, ": grid of level ", l,
                " must have rows, cols >= 1, got (", grid_rows[l], ", ", grid_cols[l], ")");
    TORCH_CHECK(grid_rows[l] * grid_cols[l] <= kMaxCellsPerBox, name, ": grid of level ", l,
                " has more than ", kMaxCellsPerBox, " cells: (", grid_rows[l], ", ",
                grid_cols[l], ")");
    max_cells = std::max(max_cells, grid_rows[l] * grid_cols[l]);
  }
  TORCH_CHECK(cell_prob >= 0.0 && cell_prob <= 1.0, name, ": cell_prob must be in [0, 1], got ",
              cell_prob);
  TORCH_CHECK(fill_mode == kFillMean || fill_mode == kFillConstant || fill_mode == kFillNoise,
              name, ": fill_mode must be 0 (mean), 1 (constant) or 2 (noise), got ", fill_mode);
  if (fill_mode == kFillConstant) {
    TORCH_CHECK(std::isfinite(fill_value), name, ": fill_value must be finite, got ",
                fill_value);
    if (dtype == at::kByte) {
      TORCH_CHECK(fill_value >= 0.0 && fill_value <= 255.0 && std::floor(fill_value) == fill_value,
                  name, ": fill_value for uint8 images must be an integer in [0, 255], got ",
                  fill_value);
    }
  }
  if (fill_mode == kFillNoise && dtype != at::kByte) {
    TORCH_CHECK(std::isfinite(noise_low) && std::isfinite(noise_high) && noise_low <= noise_high,
                name, ": noise range must be finite with low <= high, got [", noise_low, ", ",
                noise_high, "]");
  }
  return max_cells;
}

// Checks the rows of host (B, 5) float64 boxes: finite values, integer image index in
// [0, num_images). Called by both kernels (the CUDA one on a host copy of the boxes).
inline void check_boxes(const double* boxes, int64_t num_boxes, int64_t num_images) {
  constexpr const char* name = "multi_granularity_occlusion";
  for (int64_t b = 0; b < num_boxes; ++b) {
    const double* box = boxes + b * 5;
    for (int k = 0; k < 5; ++k) {
      TORCH_CHECK(std::isfinite(box[k]), name, ": box ", b, " has a non-finite value");
    }
    TORCH_CHECK(std::floor(box[0]) == box[0] && box[0] >= 0.0 &&
                    box[0] < static_cast<double>(num_images),
                name, ": box ", b, " has image index ", box[0], ", expected an integer in [0, ",
                num_images, ")");
  }
}

}  // namespace occlusion
}  // namespace person_search
