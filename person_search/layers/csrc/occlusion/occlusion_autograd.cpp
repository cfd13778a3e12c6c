// Autograd kernel of multi_granularity_occlusion: the op is a data augmentation and is not
// differentiable. Without this kernel PyTorch's fallback would let a gradient flow through
// the op as if it were the identity (silently wrong in the filled pixels). Instead, calling
// it on images or boxes that require grad, with grad mode on, is an error; otherwise the
// call goes to the device kernel and the outputs never require grad.

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <tuple>

namespace person_search {
namespace occlusion {
namespace {

using Signature = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                     at::IntArrayRef, at::IntArrayRef, double,
                                                     int64_t, double, double, double, int64_t);

std::tuple<at::Tensor, at::Tensor> occlusion_autograd(const at::Tensor& images,
                                                      const at::Tensor& boxes,
                                                      at::IntArrayRef grid_rows,
                                                      at::IntArrayRef grid_cols,
                                                      double cell_prob, int64_t fill_mode,
                                                      double fill_value, double noise_low,
                                                      double noise_high, int64_t seed) {
  TORCH_CHECK(!at::GradMode::is_enabled() || !(images.requires_grad() || boxes.requires_grad()),
              "multi_granularity_occlusion is not differentiable (a data augmentation): "
              "images and boxes must not require grad; detach them or call it under "
              "torch.no_grad()");
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("person_search::multi_granularity_occlusion", "")
                             .typed<Signature>();
  const at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(images, boxes, grid_rows, grid_cols, cell_prob, fill_mode, fill_value,
                 noise_low, noise_high, seed);
}

}  // namespace
}  // namespace occlusion

TORCH_LIBRARY_IMPL(person_search, Autograd, m) {
  m.impl("multi_granularity_occlusion", &occlusion::occlusion_autograd);
}

}  // namespace person_search
