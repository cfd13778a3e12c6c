// RoIAlign on CPU (forward and backward), same semantics as torchvision.ops.roi_align.
//
// Bilinear sampling is separable: the weight of input pixel (y, x) in output bin (ph, pw)
// is wy[ph](y) * wx[pw](x), where wy[ph] sums, over the sample rows of the bin, the two
// linear-interpolation weights of each row (and likewise for x), divided by the number of
// samples. Each RoI therefore gets a short sparse weight list per output row and column,
// computed once and reused for every channel. The kernels work on a channels-last copy of
// the features so that the innermost loop runs over contiguous channels (vectorised):
//   forward:  parallel over (RoI, output row): out[r, :, ph, pw] = sum w * in[b, y, x, :]
//   backward: parallel over channel blocks, RoIs in order inside a block, so the
//             scatter-add into the input gradient has no races and is deterministic.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace person_search {
namespace {

// Largest channel block handled at once by the backward kernel (keeps buffers in cache).
constexpr int64_t kBackwardChannelBlock = 256;
// Minimum number of multiply-adds per parallel task before splitting further.
constexpr int64_t kMinWorkPerTask = 1 << 15;

// Position and sample grid of one RoI, computed with the same expressions as torchvision.
template <typename T>
struct RoiGeometry {
  int64_t batch;
  T start_h, start_w, bin_h, bin_w;
  int64_t grid_h, grid_w;
};

template <typename T>
RoiGeometry<T> roi_geometry(const T* roi, T spatial_scale, int64_t pooled_h, int64_t pooled_w,
                            int64_t sampling_ratio, bool aligned) {
  RoiGeometry<T> g;
  g.batch = static_cast<int64_t>(roi[0]);
  const T offset = aligned ? static_cast<T>(0.5) : static_cast<T>(0);
  g.start_w = roi[1] * spatial_scale - offset;
  g.start_h = roi[2] * spatial_scale - offset;
  const T end_w = roi[3] * spatial_scale - offset;
  const T end_h = roi[4] * spatial_scale - offset;
  T roi_w = end_w - g.start_w;
  T roi_h = end_h - g.start_h;
  if (!aligned) {
    // Legacy (aligned=False) behaviour: RoIs are at least one pixel wide.
    roi_w = std::max(roi_w, static_cast<T>(1));
    roi_h = std::max(roi_h, static_cast<T>(1));
  }
  g.bin_h = roi_h / static_cast<T>(pooled_h);
  g.bin_w = roi_w / static_cast<T>(pooled_w);
  g.grid_h = sampling_ratio > 0 ? sampling_ratio
                                : static_cast<int64_t>(std::ceil(roi_h / pooled_h));
  g.grid_w = sampling_ratio > 0 ? sampling_ratio
                                : static_cast<int64_t>(std::ceil(roi_w / pooled_w));
  return g;
}

// Sparse separable weights along one axis: bin p uses entries [offset[p], offset[p + 1]).
template <typename T>
struct AxisWeights {
  std::vector<int64_t> offset;
  std::vector<int64_t> index;
  std::vector<T> weight;

  void add(int64_t first, int64_t i, T w) {
    for (size_t e = static_cast<size_t>(first); e < index.size(); ++e) {
      if (index[e] == i) {
        weight[e] += w;
        return;
      }
    }
    index.push_back(i);
    weight.push_back(w);
  }

  // Samples of bin p lie at start + p * bin + (i + 0.5) * bin / grid, i < grid; each adds
  // its two linear-interpolation weights (torchvision's clamping rules), divided by grid.
  void compute(T start, T bin, int64_t grid, int64_t pooled, int64_t size) {
    offset.assign(pooled + 1, 0);
    index.clear();
    weight.clear();
    for (int64_t p = 0; p < pooled; ++p) {
      const int64_t first = static_cast<int64_t>(index.size());
      offset[p] = first;
      for (int64_t i = 0; i < grid; ++i) {
        T c = start + p * bin + static_cast<T>(i + .5f) * bin / static_cast<T>(grid);
        if (c < -1.0 || c > size) {
          continue;  // sample outside the feature map: contributes zero
        }
        if (c <= 0) {
          c = 0;
        }
        int64_t low = static_cast<int64_t>(c);
        int64_t high;
        if (low >= size - 1) {
          high = low = size - 1;
          c = static_cast<T>(low);
        } else {
          high = low + 1;
        }
        const T frac = c - low;
        add(first, low, static_cast<T>(1) - frac);
        add(first, high, frac);
      }
      for (size_t e = static_cast<size_t>(first); e < weight.size(); ++e) {
        weight[e] /= static_cast<T>(grid);
      }
    }
    offset[pooled] = static_cast<int64_t>(index.size());
  }
};

void check_rois(const at::Tensor& rois, const at::Tensor& features, const char* name) {
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, name,
              ": rois must have shape (K, 5) [batch_index, x1, y1, x2, y2], got ",
              rois.sizes());
  TORCH_CHECK(rois.scalar_type() == features.scalar_type(), name,
              ": rois and features must have the same dtype, got ", rois.scalar_type(),
              " and ", features.scalar_type());
  TORCH_CHECK(rois.device() == features.device(), name,
              ": rois and features must be on the same device, got ", rois.device(), " and ",
              features.device());
}

template <typename T>
void check_batch_indices(const T* rois, int64_t num_rois, int64_t batch_size, const char* name) {
  for (int64_t r = 0; r < num_rois; ++r) {
    const int64_t b = static_cast<int64_t>(rois[r * 5]);
    TORCH_CHECK(b >= 0 && b < batch_size, name, ": roi ", r, " has batch index ", rois[r * 5],
                ", outside [0, ", batch_size, ")");
  }
}

template <typename T>
void forward_kernel(const T* input, const T* rois, T* output, int64_t num_rois, int64_t channels,
                    int64_t height, int64_t width, int64_t pooled_h, int64_t pooled_w,
                    T spatial_scale, int64_t sampling_ratio, bool aligned) {
  // input: (N, H, W, C) channels-last; output: (K, C, PH, PW).
  const int64_t work = std::max<int64_t>(1, channels * pooled_w * 4);
  const int64_t grain = std::max<int64_t>(1, kMinWorkPerTask / work);
  at::parallel_for(0, num_rois * pooled_h, grain, [&](int64_t begin, int64_t end) {
    AxisWeights<T> wy, wx;
    std::vector<T> acc(pooled_w * channels);
    int64_t current_roi = -1;
    RoiGeometry<T> g{};
    for (int64_t task = begin; task < end; ++task) {
      const int64_t r = task / pooled_h;
      const int64_t ph = task % pooled_h;
      if (r != current_roi) {
        current_roi = r;
        g = roi_geometry(rois + r * 5, spatial_scale, pooled_h, pooled_w, sampling_ratio,
                         aligned);
        wy.compute(g.start_h, g.bin_h, g.grid_h, pooled_h, height);
        wx.compute(g.start_w, g.bin_w, g.grid_w, pooled_w, width);
      }
      std::fill(acc.begin(), acc.end(), static_cast<T>(0));
      const T* image = input + g.batch * height * width * channels;
      for (int64_t pw = 0; pw < pooled_w; ++pw) {
        T* a = acc.data() + pw * channels;
        for (int64_t ey = wy.offset[ph]; ey < wy.offset[ph + 1]; ++ey) {
          const T* row = image + wy.index[ey] * width * channels;
          for (int64_t ex = wx.offset[pw]; ex < wx.offset[pw + 1]; ++ex) {
            const T w = wy.weight[ey] * wx.weight[ex];
            const T* src = row + wx.index[ex] * channels;
            for (int64_t c = 0; c < channels; ++c) {
              a[c] += w * src[c];
            }
          }
        }
      }
      T* out = output + (r * channels * pooled_h + ph) * pooled_w;
      for (int64_t c = 0; c < channels; ++c) {
        T* dst = out + c * pooled_h * pooled_w;
        for (int64_t pw = 0; pw < pooled_w; ++pw) {
          dst[pw] = acc[pw * channels + c];
        }
      }
    }
  });
}

template <typename T>
void backward_kernel(const T* grad, const T* rois, T* grad_input, int64_t num_rois,
                     int64_t channels, int64_t height, int64_t width, int64_t pooled_h,
                     int64_t pooled_w, T spatial_scale, int64_t sampling_ratio, bool aligned) {
  // grad: (K, C, PH, PW); grad_input: (N, H, W, C) channels-last, zero-initialised.
  const int64_t bins = pooled_h * pooled_w;
  at::parallel_for(0, channels, 1, [&](int64_t c_begin, int64_t c_end) {
    AxisWeights<T> wy, wx;
    std::vector<T> block(bins * std::min(kBackwardChannelBlock, c_end - c_begin));
    for (int64_t c0 = c_begin; c0 < c_end; c0 += kBackwardChannelBlock) {
      const int64_t nc = std::min(kBackwardChannelBlock, c_end - c0);
      for (int64_t r = 0; r < num_rois; ++r) {
        const RoiGeometry<T> g = roi_geometry(rois + r * 5, spatial_scale, pooled_h, pooled_w,
                                              sampling_ratio, aligned);
        wy.compute(g.start_h, g.bin_h, g.grid_h, pooled_h, height);
        wx.compute(g.start_w, g.bin_w, g.grid_w, pooled_w, width);
        if (wy.index.empty() || wx.index.empty()) {
          continue;
        }
        // block[bin, c] = grad[r, c0 + c, bin]
        const T* src = grad + (r * channels + c0) * bins;
        for (int64_t c = 0; c < nc; ++c) {
          for (int64_t bin = 0; bin < bins; ++bin) {
            block[bin * nc + c] = src[c * bins + bin];
          }
        }
        T* image = grad_input + g.batch * height * width * channels + c0;
        for (int64_t ph = 0; ph < pooled_h; ++ph) {
          for (int64_t pw = 0; pw < pooled_w; ++pw) {
            const T* gsrc = block.data() + (ph * pooled_w + pw) * nc;
            for (int64_t ey = wy.offset[ph]; ey < wy.offset[ph + 1]; ++ey) {
              T* row = image + wy.index[ey] * width * channels;
              for (int64_t ex = wx.offset[pw]; ex < wx.offset[pw + 1]; ++ex) {
                const T w = wy.weight[ey] * wx.weight[ex];
                T* dst = row + wx.index[ex] * channels;
                for (int64_t c = 0; c < nc; ++c) {
                  dst[c] += w * gsrc[c];
                }
              }
            }
          }
        }
      }
    }
  });
}

at::Tensor roi_align_forward_cpu(const at::Tensor& input, const at::Tensor& rois,
                                 double spatial_scale, int64_t pooled_height,
                                 int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  constexpr const char* name = "roi_align_forward";
  TORCH_CHECK(input.dim() == 4, name, ": input must have shape (N, C, H, W), got ",
              input.sizes());
  check_rois(rois, input, name);
  TORCH_CHECK(pooled_height > 0 && pooled_width > 0, name,
              ": output size must be positive, got (", pooled_height, ", ", pooled_width, ")");
  const int64_t num_rois = rois.size(0);
  const int64_t batch = input.size(0), channels = input.size(1);
  const int64_t height = input.size(2), width = input.size(3);
  at::Tensor output = at::zeros({num_rois, channels, pooled_height, pooled_width},
                                input.options());
  if (num_rois == 0 || channels == 0) {
    return output;
  }
  TORCH_CHECK(height > 0 && width > 0, name, ": input has an empty spatial size ",
              input.sizes());
  const at::Tensor input_hwc = input.permute({0, 2, 3, 1}).contiguous();
  const at::Tensor rois_c = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), name, [&] {
    check_batch_indices(rois_c.data_ptr<scalar_t>(), num_rois, batch, name);
    forward_kernel<scalar_t>(input_hwc.data_ptr<scalar_t>(), rois_c.data_ptr<scalar_t>(),
                             output.data_ptr<scalar_t>(), num_rois, channels, height, width,
                             pooled_height, pooled_width, static_cast<scalar_t>(spatial_scale),
                             sampling_ratio, aligned);
  });
  return output;
}

at::Tensor roi_align_backward_cpu(const at::Tensor& grad, const at::Tensor& rois,
                                  double spatial_scale, int64_t pooled_height,
                                  int64_t pooled_width, int64_t batch_size, int64_t channels,
                                  int64_t height, int64_t width, int64_t sampling_ratio,
                                  bool aligned) {
  constexpr const char* name = "roi_align_backward";
  check_rois(rois, grad, name);
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
                  grad.size(2) == pooled_height && grad.size(3) == pooled_width,
              name, ": grad must have shape (", rois.size(0), ", ", channels, ", ", pooled_height,
              ", ", pooled_width, "), got ", grad.sizes());
  const int64_t num_rois = rois.size(0);
  at::Tensor grad_hwc = at::zeros({batch_size, height, width, channels}, grad.options());
  if (num_rois > 0 && channels > 0) {
    TORCH_CHECK(height > 0 && width > 0, name, ": empty input spatial size (", height, ", ",
                width, ")");
    const at::Tensor grad_c = grad.contiguous();
    const at::Tensor rois_c = rois.contiguous();
    AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), name, [&] {
      check_batch_indices(rois_c.data_ptr<scalar_t>(), num_rois, batch_size, name);
      backward_kernel<scalar_t>(grad_c.data_ptr<scalar_t>(), rois_c.data_ptr<scalar_t>(),
                                grad_hwc.data_ptr<scalar_t>(), num_rois, channels, height, width,
                                pooled_height, pooled_width,
                                static_cast<scalar_t>(spatial_scale), sampling_ratio, aligned);
    });
  }
  return grad_hwc.permute({0, 3, 1, 2}).contiguous();
}

}  // namespace

TORCH_LIBRARY_IMPL(person_search, CPU, m) {
  m.impl("roi_align_forward", &roi_align_forward_cpu);
  m.impl("roi_align_backward", &roi_align_backward_cpu);
}

}  // namespace person_search
