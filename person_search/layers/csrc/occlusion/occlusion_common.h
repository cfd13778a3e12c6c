// Shared (host and device) pieces of the multi-granularity occlusion op, so that the CPU
// and CUDA kernels make bit-identical decisions.
//
// Random numbers come from a counter-based generator: every decision hashes its own key
// (seed, stream, level, image, a, b) with a chain of splitmix64 finalisers, so the result
// depends only on the key, never on the order of evaluation or the device.
//   stream kCellStream:  a = box row in `boxes`, b = cell index (row-major)  -> covered?
//   stream kKeepStream:  a = box row, b = 0  -> which cell to uncover if all were covered
//   stream kNoiseStream: a = channel, b = y * W + x  -> noise value of one pixel
//
// Box pixels: pixel (y, x) covers [x, x + 1) x [y, y + 1), its centre is (x + 0.5, y + 0.5).
// A box [x1, y1, x2, y2] owns the pixels whose centre lies in [x1, x2) x [y1, y2):
// columns [ceil(x1 - 0.5), ceil(x2 - 0.5)) clipped to [0, W), same for rows.
// The box is split into rows x cols cells with integer bounds: cell row i spans
// [y0 + floor(i * h / rows), y0 + floor((i + 1) * h / rows)), h = y1 - y0 (same for columns).
// Cells with no pixel are never covered and do not count as cells of the box.
//
// Overlapping boxes: a pixel is filled when a covered cell of some box contains it and no
// visible (non-empty, uncovered) cell of any box of the same image contains it. Visible
// cells take precedence, so every box keeps at least one cell of untouched pixels even when
// its neighbours' covered cells overlap it.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define PS_HOST_DEVICE __host__ __device__
#else
#define PS_HOST_DEVICE
#endif

namespace person_search {
namespace occlusion {

enum FillMode : int64_t { kFillMean = 0, kFillConstant = 1, kFillNoise = 2 };

constexpr uint64_t kCellStream = 1;
constexpr uint64_t kKeepStream = 2;
constexpr uint64_t kNoiseStream = 3;

PS_HOST_DEVICE inline uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// The chain up to key `a`; counter_hash(..., a, b) == splitmix64(prefix ^ b), so loops over
// `b` (e.g. the pixels of a noise plane) hash once per element instead of six times.
PS_HOST_DEVICE inline uint64_t counter_hash_prefix(uint64_t seed, uint64_t stream,
                                                   uint64_t level, uint64_t image, uint64_t a) {
  uint64_t h = splitmix64(seed);
  h = splitmix64(h ^ stream);
  h = splitmix64(h ^ level);
  h = splitmix64(h ^ image);
  return splitmix64(h ^ a);
}

PS_HOST_DEVICE inline uint64_t counter_hash(uint64_t seed, uint64_t stream, uint64_t level,
                                            uint64_t image, uint64_t a, uint64_t b) {
  return splitmix64(counter_hash_prefix(seed, stream, level, image, a) ^ b);
}

// Uniform double in [0, 1) from the top 53 bits (exact).
PS_HOST_DEVICE inline double hash_to_unit(uint64_t h) {
  return static_cast<double>(h >> 11) * (1.0 / 9007199254740992.0);
}

// Uniform integer in [0, n) from the top 32 bits (multiply-shift), n < 2^32.
PS_HOST_DEVICE inline int64_t hash_to_index(uint64_t h, int64_t n) {
  return static_cast<int64_t>(((h >> 32) * static_cast<uint64_t>(n)) >> 32);
}

// lo + u * (hi - lo) with each operation rounded separately (no fused multiply-add), so
// that host, device and the PyTorch reference agree bit for bit.
PS_HOST_DEVICE inline double noise_value(double u, double lo, double hi) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(lo, __dmul_rn(u, __dsub_rn(hi, lo)));
#else
  volatile double range = hi - lo;
  volatile double scaled = u * range;
  return lo + scaled;
#endif
}

// Conversions of fill values to the pixel type (mean rounded half-to-even for uint8; uint8
// noise takes the top 8 bits of the hash, float noise is noise_value of the top 53 bits).
template <typename T>
struct PixelCast {
  PS_HOST_DEVICE static T from_mean(double mean) { return static_cast<T>(mean); }
  PS_HOST_DEVICE static T from_noise(uint64_t h, double lo, double hi) {
    return static_cast<T>(noise_value(hash_to_unit(h), lo, hi));
  }
};

template <>
struct PixelCast<uint8_t> {
  PS_HOST_DEVICE static uint8_t from_mean(double mean) {
    return static_cast<uint8_t>(nearbyint(mean));
  }
  PS_HOST_DEVICE static uint8_t from_noise(uint64_t h, double, double) {
    return static_cast<uint8_t>(h >> 56);
  }
};

// First pixel index owned by a box edge at coordinate v, clipped to [0, size].
PS_HOST_DEVICE inline int64_t pixel_edge(double v, int64_t size) {
  double p = ceil(v - 0.5);
  p = p < 0.0 ? 0.0 : p;
  p = p > static_cast<double>(size) ? static_cast<double>(size) : p;
  return static_cast<int64_t>(p);
}

struct PixelBox {
  int64_t x0, y0, x1, y1;  // [x0, x1) x [y0, y1)
};

PS_HOST_DEVICE inline PixelBox box_pixels(const double* box, int64_t height, int64_t width) {
  PixelBox p;
  p.x0 = pixel_edge(box[1], width);
  p.y0 = pixel_edge(box[2], height);
  p.x1 = pixel_edge(box[3], width);
  p.y1 = pixel_edge(box[4], height);
  return p;
}

// Pixel rectangle of cell `cell` (row-major in a rows x cols grid) of box `p`.
PS_HOST_DEVICE inline PixelBox cell_pixels(const PixelBox& p, int64_t rows, int64_t cols,
                                           int64_t cell) {
  const int64_t i = cell / cols, j = cell % cols;
  const int64_t h = p.y1 > p.y0 ? p.y1 - p.y0 : 0;
  const int64_t w = p.x1 > p.x0 ? p.x1 - p.x0 : 0;
  PixelBox c;
  c.y0 = p.y0 + (i * h) / rows;
  c.y1 = p.y0 + ((i + 1) * h) / rows;
  c.x0 = p.x0 + (j * w) / cols;
  c.x1 = p.x0 + ((j + 1) * w) / cols;
  return c;
}

// Decides which cells of box `box_index` are covered at `level`; writes mask[0..rows*cols).
// A box never ends up fully covered: if every non-empty cell was drawn as covered, the
// non-empty cell number hash_to_index(keep hash, count) (in row-major order) is uncovered.
PS_HOST_DEVICE inline void decide_cells(const PixelBox& p, int64_t rows, int64_t cols,
                                        double cell_prob, uint64_t seed, int64_t level,
                                        int64_t image, int64_t box_index, bool* mask) {
  const int64_t num_cells = rows * cols;
  int64_t valid = 0, covered = 0;
  for (int64_t cell = 0; cell < num_cells; ++cell) {
    const PixelBox c = cell_pixels(p, rows, cols, cell);
    bool cover = false;
    if (c.x1 > c.x0 && c.y1 > c.y0) {
      ++valid;
      const uint64_t h = counter_hash(seed, kCellStream, static_cast<uint64_t>(level),
                                      static_cast<uint64_t>(image),
                                      static_cast<uint64_t>(box_index),
                                      static_cast<uint64_t>(cell));
      cover = hash_to_unit(h) < cell_prob;
      covered += cover ? 1 : 0;
    }
    mask[cell] = cover;
  }
  if (valid > 0 && covered == valid) {
    const uint64_t h = counter_hash(seed, kKeepStream, static_cast<uint64_t>(level),
                                    static_cast<uint64_t>(image),
                                    static_cast<uint64_t>(box_index), 0);
    int64_t keep = hash_to_index(h, valid);
    for (int64_t cell = 0; cell < num_cells; ++cell) {
      const PixelBox c = cell_pixels(p, rows, cols, cell);
      if (c.x1 > c.x0 && c.y1 > c.y0) {
        if (keep == 0) {
          mask[cell] = false;
          break;
        }
        --keep;
      }
    }
  }
}

}  // namespace occlusion
}  // namespace person_search
