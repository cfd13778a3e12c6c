// RoIAlign on CUDA: one thread per output element (forward) and one thread per output
// gradient element scattering with atomic adds (backward). Same semantics as
// torchvision.ops.roi_align; half inputs accumulate in float.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ceil_div.h>
#include <ATen/cuda/Atomic.cuh>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

namespace person_search {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535 * 16;

template <typename A>
struct Geometry {
  A start_h, start_w, bin_h, bin_w;
  int64_t grid_h, grid_w;
};

template <typename T, typename A>
__device__ Geometry<A> geometry(const T* roi, A scale, int64_t pooled_h, int64_t pooled_w,
                                int64_t sampling_ratio, bool aligned) {
  Geometry<A> g;
  const A offset = aligned ? static_cast<A>(0.5) : static_cast<A>(0);
  g.start_w = static_cast<A>(roi[1]) * scale - offset;
  g.start_h = static_cast<A>(roi[2]) * scale - offset;
  A roi_w = static_cast<A>(roi[3]) * scale - offset - g.start_w;
  A roi_h = static_cast<A>(roi[4]) * scale - offset - g.start_h;
  if (!aligned) {
    roi_w = roi_w > static_cast<A>(1) ? roi_w : static_cast<A>(1);
    roi_h = roi_h > static_cast<A>(1) ? roi_h : static_cast<A>(1);
  }
  g.bin_h = roi_h / static_cast<A>(pooled_h);
  g.bin_w = roi_w / static_cast<A>(pooled_w);
  g.grid_h = sampling_ratio > 0 ? sampling_ratio
                                : static_cast<int64_t>(ceil(roi_h / static_cast<A>(pooled_h)));
  g.grid_w = sampling_ratio > 0 ? sampling_ratio
                                : static_cast<int64_t>(ceil(roi_w / static_cast<A>(pooled_w)));
  return g;
}

// Bilinear interpolation weights of sample (y, x); returns false for a sample outside the map.
template <typename A>
__device__ bool bilinear(int64_t height, int64_t width, A y, A x, int64_t* idx, A* w) {
  if (y < static_cast<A>(-1) || y > static_cast<A>(height) || x < static_cast<A>(-1) ||
      x > static_cast<A>(width)) {
    return false;
  }
  if (y <= 0) y = 0;
  if (x <= 0) x = 0;
  int64_t y_low = static_cast<int64_t>(y), x_low = static_cast<int64_t>(x);
  int64_t y_high, x_high;
  if (y_low >= height - 1) {
    y_high = y_low = height - 1;
    y = static_cast<A>(y_low);
  } else {
    y_high = y_low + 1;
  }
  if (x_low >= width - 1) {
    x_high = x_low = width - 1;
    x = static_cast<A>(x_low);
  } else {
    x_high = x_low + 1;
  }
  const A ly = y - y_low, lx = x - x_low;
  const A hy = static_cast<A>(1) - ly, hx = static_cast<A>(1) - lx;
  idx[0] = y_low * width + x_low;
  idx[1] = y_low * width + x_high;
  idx[2] = y_high * width + x_low;
  idx[3] = y_high * width + x_high;
  w[0] = hy * hx;
  w[1] = hy * lx;
  w[2] = ly * hx;
  w[3] = ly * lx;
  return true;
}

template <typename T>
__global__ void forward_kernel(int64_t total, const T* input, const T* rois, T* output,
                               int64_t batch, int64_t channels, int64_t height, int64_t width,
                               int64_t pooled_h, int64_t pooled_w, double spatial_scale,
                               int64_t sampling_ratio, bool aligned) {
  using A = at::opmath_type<T>;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t pw = i % pooled_w;
    const int64_t ph = (i / pooled_w) % pooled_h;
    const int64_t c = (i / (pooled_w * pooled_h)) % channels;
    const int64_t r = i / (pooled_w * pooled_h * channels);
    const T* roi = rois + r * 5;
    const int64_t b = static_cast<int64_t>(static_cast<A>(roi[0]));
    CUDA_KERNEL_ASSERT(b >= 0 && b < batch);
    const Geometry<A> g =
        geometry<T, A>(roi, static_cast<A>(spatial_scale), pooled_h, pooled_w, sampling_ratio,
                       aligned);
    const T* plane = input + (b * channels + c) * height * width;
    A acc = 0;
    for (int64_t iy = 0; iy < g.grid_h; ++iy) {
      const A y = g.start_h + ph * g.bin_h +
                  static_cast<A>(iy + .5f) * g.bin_h / static_cast<A>(g.grid_h);
      for (int64_t ix = 0; ix < g.grid_w; ++ix) {
        const A x = g.start_w + pw * g.bin_w +
                    static_cast<A>(ix + .5f) * g.bin_w / static_cast<A>(g.grid_w);
        int64_t idx[4];
        A w[4];
        if (bilinear<A>(height, width, y, x, idx, w)) {
          for (int k = 0; k < 4; ++k) {
            acc += w[k] * static_cast<A>(plane[idx[k]]);
          }
        }
      }
    }
    const int64_t count = g.grid_h * g.grid_w > 1 ? g.grid_h * g.grid_w : 1;
    output[i] = static_cast<T>(acc / static_cast<A>(count));
  }
}

template <typename T>
__global__ void backward_kernel(int64_t total, const T* grad, const T* rois, T* grad_input,
                                int64_t batch, int64_t channels, int64_t height, int64_t width,
                                int64_t pooled_h, int64_t pooled_w, double spatial_scale,
                                int64_t sampling_ratio, bool aligned) {
  using A = at::opmath_type<T>;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t pw = i % pooled_w;
    const int64_t ph = (i / pooled_w) % pooled_h;
    const int64_t c = (i / (pooled_w * pooled_h)) % channels;
    const int64_t r = i / (pooled_w * pooled_h * channels);
    const T* roi = rois + r * 5;
    const int64_t b = static_cast<int64_t>(static_cast<A>(roi[0]));
    CUDA_KERNEL_ASSERT(b >= 0 && b < batch);
    const Geometry<A> g =
        geometry<T, A>(roi, static_cast<A>(spatial_scale), pooled_h, pooled_w, sampling_ratio,
                       aligned);
    const int64_t count = g.grid_h * g.grid_w > 1 ? g.grid_h * g.grid_w : 1;
    const A gval = static_cast<A>(grad[i]) / static_cast<A>(count);
    T* plane = grad_input + (b * channels + c) * height * width;
    for (int64_t iy = 0; iy < g.grid_h; ++iy) {
      const A y = g.start_h + ph * g.bin_h +
                  static_cast<A>(iy + .5f) * g.bin_h / static_cast<A>(g.grid_h);
      for (int64_t ix = 0; ix < g.grid_w; ++ix) {
        const A x = g.start_w + pw * g.bin_w +
                    static_cast<A>(ix + .5f) * g.bin_w / static_cast<A>(g.grid_w);
        int64_t idx[4];
        A w[4];
        if (bilinear<A>(height, width, y, x, idx, w)) {
          for (int k = 0; k < 4; ++k) {
            gpuAtomicAdd(plane + idx[k], static_cast<T>(gval * w[k]));
          }
        }
      }
    }
  }
}

int blocks_for(int64_t total) {
  return static_cast<int>(std::min<int64_t>(at::ceil_div<int64_t>(total, kThreads), kMaxBlocks));
}

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

at::Tensor roi_align_forward_cuda(const at::Tensor& input, const at::Tensor& rois,
                                  double spatial_scale, int64_t pooled_height,
                                  int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  constexpr const char* name = "roi_align_forward";
  TORCH_CHECK(input.dim() == 4, name, ": input must have shape (N, C, H, W), got ",
              input.sizes());
  check_rois(rois, input, name);
  TORCH_CHECK(pooled_height > 0 && pooled_width > 0, name,
              ": output size must be positive, got (", pooled_height, ", ", pooled_width, ")");
  const c10::cuda::CUDAGuard guard(input.device());
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  at::Tensor output =
      at::zeros({num_rois, channels, pooled_height, pooled_width}, input.options());
  const int64_t total = output.numel();
  if (total == 0) {
    return output;
  }
  TORCH_CHECK(input.size(2) > 0 && input.size(3) > 0, name,
              ": input has an empty spatial size ", input.sizes());
  const at::Tensor input_c = input.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND_HALF(input.scalar_type(), name, [&] {
    forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        total, input_c.data_ptr<scalar_t>(), rois_c.data_ptr<scalar_t>(),
        output.data_ptr<scalar_t>(), input.size(0), channels, input.size(2), input.size(3),
        pooled_height, pooled_width, spatial_scale, sampling_ratio, aligned);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return output;
}

at::Tensor roi_align_backward_cuda(const at::Tensor& grad, const at::Tensor& rois,
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
  const c10::cuda::CUDAGuard guard(grad.device());
  at::Tensor grad_input = at::zeros({batch_size, channels, height, width}, grad.options());
  const int64_t total = grad.numel();
  if (total == 0) {
    return grad_input;
  }
  TORCH_CHECK(height > 0 && width > 0, name, ": empty input spatial size (", height, ", ",
              width, ")");
  const at::Tensor grad_c = grad.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND_HALF(grad.scalar_type(), name, [&] {
    backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        total, grad_c.data_ptr<scalar_t>(), rois_c.data_ptr<scalar_t>(),
        grad_input.data_ptr<scalar_t>(), batch_size, channels, height, width, pooled_height,
        pooled_width, spatial_scale, sampling_ratio, aligned);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_input;
}

}  // namespace

TORCH_LIBRARY_IMPL(person_search, CUDA, m) {
  m.impl("roi_align_forward", &roi_align_forward_cuda);
  m.impl("roi_align_backward", &roi_align_backward_cuda);
}

}  // namespace person_search
