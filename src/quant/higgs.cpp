#include "quant/higgs.h"

#include <cmath>
#include <cstring>

#include "quant/hadamard.h"
#include "util/error.h"

namespace kvo::quant {
namespace {

uint32_t read_code(const uint8_t* codes, int code_bytes, size_t i) {
  if (code_bytes == 1) return codes[i];
  return uint32_t(codes[2 * i]) | (uint32_t(codes[2 * i + 1]) << 8);
}

void write_code(uint8_t* codes, int code_bytes, size_t i, uint32_t c) {
  if (code_bytes == 1) {
    codes[i] = uint8_t(c);
  } else {
    codes[2 * i] = uint8_t(c & 0xff);
    codes[2 * i + 1] = uint8_t(c >> 8);
  }
}

}  // namespace

HiggsQuantizer::HiggsQuantizer(int p, int n, int group) : grid_(nullptr), group_(group) {
  check(p >= 1 && p <= 64, "higgs: d={} out of range", p);
  check(n >= 2 && n <= 65536, "higgs: n={} out of range (2..65536)", n);
  check(group >= 64 && group <= 4096 && is_power_of_two(size_t(group)),
        "higgs: group={} must be a power of two in 64..4096", group);
  grid_ = &eden_grid(p, n);
}

std::string HiggsQuantizer::spec() const {
  return "higgs:d=" + std::to_string(p()) + ",n=" + std::to_string(n_points()) +
         ",group=" + std::to_string(group_);
}

size_t HiggsQuantizer::codes_bytes(size_t dim) const {
  const size_t raw = groups(dim) * size_t(tuples()) * size_t(code_bytes());
  return (raw + 3) & ~size_t(3);
}

void HiggsQuantizer::encode_rotated_group(const float* y, uint32_t* codes) const {
  const int pp = p(), T = tuples();
  float tuple[64];
  for (int t = 0; t < T; ++t) {
    for (int j = 0; j < pp; ++j) {
      const int i = t * pp + j;
      tuple[j] = i < group_ ? y[i] : 0.0f;
    }
    codes[t] = grid_->nearest(tuple);
  }
}

void HiggsQuantizer::encode_group(const float* xg, uint32_t* codes, float* scale) const {
  const size_t h = size_t(group_);
  std::vector<float> y(xg, xg + h);
  const float s = std::sqrt(canonical_sum_squares(y.data(), h));
  fwht(y.data(), h);
  // Division (not multiplication by 1/s) because the CUDA kernel divides too: same rounding.
  for (size_t i = 0; i < h; ++i) y[i] = s > 0.0f ? y[i] / s : 0.0f;
  encode_rotated_group(y.data(), codes);
  *scale = s;
}

void HiggsQuantizer::encode_into(const float* x, size_t n, size_t dim, uint8_t* out) const {
  const size_t G = groups(dim), T = size_t(tuples()), h = size_t(group_);
  const size_t rec = bytes_per_vector(dim), cbytes = codes_bytes(dim);
  const int cb = code_bytes();
#pragma omp parallel for schedule(static)
  for (long long i = 0; i < (long long)n; ++i) {
    std::vector<float> xg(h);
    std::vector<uint32_t> codes(T);
    uint8_t* r = out + size_t(i) * rec;
    std::memset(r, 0, cbytes);
    for (size_t g = 0; g < G; ++g) {
      for (size_t k = 0; k < h; ++k) {
        const size_t j = g * h + k;
        xg[k] = j < dim ? x[size_t(i) * dim + j] : 0.0f;
      }
      float s;
      encode_group(xg.data(), codes.data(), &s);
      for (size_t t = 0; t < T; ++t) write_code(r, cb, g * T + t, codes[t]);
      std::memcpy(r + cbytes + 4 * g, &s, 4);
    }
  }
}

void HiggsQuantizer::decode(const uint8_t* bytes, size_t n, size_t dim, float* out) const {
  const size_t G = groups(dim), T = size_t(tuples()), h = size_t(group_);
  const size_t rec = bytes_per_vector(dim), cbytes = codes_bytes(dim);
  const int cb = code_bytes(), pp = p();
  const float inv_h = 1.0f / float(h);  // exact: h is a power of two
#pragma omp parallel for schedule(static)
  for (long long i = 0; i < (long long)n; ++i) {
    std::vector<float> z(h);
    const uint8_t* r = bytes + size_t(i) * rec;
    for (size_t g = 0; g < G; ++g) {
      float s;
      std::memcpy(&s, r + cbytes + 4 * g, 4);
      for (size_t t = 0; t < T; ++t) {
        const float* pt = grid_->point(read_code(r, cb, g * T + t));
        for (int j = 0; j < pp; ++j) {
          const size_t k = t * pp + j;
          if (k < h) z[k] = pt[j] * s;
        }
      }
      fwht(z.data(), h);
      for (size_t k = 0; k < h; ++k) {
        const size_t j = g * h + k;
        if (j < dim) out[size_t(i) * dim + j] = z[k] * inv_h;
      }
    }
  }
}

std::vector<float> HiggsQuantizer::rotate_query(const float* q, size_t dim) const {
  const size_t G = groups(dim), h = size_t(group_);
  std::vector<float> r(G * h, 0.0f);
  for (size_t j = 0; j < dim; ++j) r[j] = q[j];
  fwht_rows(r.data(), G, h);
  return r;
}

void HiggsQuantizer::score(const float* q_rot, const uint8_t* keys, size_t n, size_t dim,
                           float* scores) const {
  const size_t G = groups(dim), T = size_t(tuples()), h = size_t(group_);
  const size_t rec = bytes_per_vector(dim), cbytes = codes_bytes(dim);
  const int cb = code_bytes(), pp = p(), np = n_points();
  // Lookup table lut[g][t][c] = grid[c] . (H q_g)_t: G*T*n dot products once, then each key
  // costs G*T table reads. Worth it once there are more keys than grid points.
  const bool use_lut = n >= size_t(np) && G * T * size_t(np) <= (size_t(1) << 22);
  std::vector<float> lut;
  if (use_lut) {
    lut.resize(G * T * size_t(np));
    for (size_t g = 0; g < G; ++g)
      for (size_t t = 0; t < T; ++t)
        for (int c = 0; c < np; ++c) {
          const float* pt = grid_->point(uint32_t(c));
          float acc = 0.0f;
          for (int j = 0; j < pp; ++j) {
            const size_t k = t * pp + j;
            if (k < h) acc += pt[j] * q_rot[g * h + k];
          }
          lut[(g * T + t) * np + c] = acc;
        }
  }
  const float inv_h = 1.0f / float(h);
#pragma omp parallel for schedule(static)
  for (long long i = 0; i < (long long)n; ++i) {
    const uint8_t* r = keys + size_t(i) * rec;
    float total = 0.0f;
    for (size_t g = 0; g < G; ++g) {
      float s;
      std::memcpy(&s, r + cbytes + 4 * g, 4);
      float acc = 0.0f;
      for (size_t t = 0; t < T; ++t) {
        const uint32_t c = read_code(r, cb, g * T + t);
        if (use_lut) {
          acc += lut[(g * T + t) * np + c];
        } else {
          const float* pt = grid_->point(c);
          for (int j = 0; j < pp; ++j) {
            const size_t k = t * pp + j;
            if (k < h) acc += pt[j] * q_rot[g * h + k];
          }
        }
      }
      total += acc * s * inv_h;
    }
    scores[i] = total;
  }
}

}  // namespace kvo::quant
