// Operator schemas of the person_search extension and the Python module entry point.
//
// Every op lives in the `person_search` namespace (torch.ops.person_search.*). The CPU
// kernels are registered in the *_cpu.cpp files and the CUDA kernels in the *_cuda.cu
// files, each behind its own TORCH_LIBRARY_IMPL block. Autograd: RoIAlign's is added in
// Python (person_search/layers/roi_align.py); the occlusion op is not differentiable and
// its Autograd kernel (occlusion/occlusion_autograd.cpp) says so.

#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(person_search, m) {
  // input: (N, C, H, W); rois: (K, 5) [batch_index, x1, y1, x2, y2]; returns (K, C, PH, PW).
  m.def(
      "roi_align_forward(Tensor input, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width, int sampling_ratio, bool aligned) -> Tensor");
  // grad: (K, C, PH, PW); returns the gradient of the input, (N, C, H, W).
  m.def(
      "roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width, int batch_size, int channels, int height, int width, "
      "int sampling_ratio, bool aligned) -> Tensor");
  // images: (N, C, H, W); boxes: (B, 5) [image_index, x1, y1, x2, y2];
  // returns occluded (L, N, C, H, W) and cell_masks (L, B, max(rows * cols)).
  m.def(
      "multi_granularity_occlusion(Tensor images, Tensor boxes, int[] grid_rows, "
      "int[] grid_cols, float cell_prob, int fill_mode, float fill_value, float noise_low, "
      "float noise_high, int seed) -> (Tensor, Tensor)");
}

// `import person_search._C` loads the library so that the registrations above run. The
// module has two functions: built_with_cuda(), whether the CUDA kernels were compiled in
// (setup.py defines WITH_CUDA when it builds them, e.g. with FORCE_CUDA=1), and
// built_with_openmp(), whether at::parallel_for in the CPU kernels uses OpenMP threads
// (setup.py passes -fopenmp on Linux; without it ATen's OpenMP parallel_for runs serially).
namespace {
PyObject* built_with_openmp(PyObject* /*self*/, PyObject* /*args*/) {
#ifdef _OPENMP
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

PyObject* built_with_cuda(PyObject* /*self*/, PyObject* /*args*/) {
#ifdef WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

PyMethodDef module_methods[] = {
    {"built_with_cuda", built_with_cuda, METH_NOARGS,
     "built_with_cuda() -> bool: whether the CUDA kernels of the ops were compiled in."},
    {"built_with_openmp", built_with_openmp, METH_NOARGS,
     "built_with_openmp() -> bool: whether the CPU kernels run on torch's OpenMP threads."},
    {nullptr, nullptr, 0, nullptr}};
}  // namespace

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "Compiled ops of person_search (see torch.ops.person_search).",
      -1, module_methods};
  return PyModule_Create(&module_def);
}
}
