#include "kv/head_diagnostics.h"

#include <algorithm>
#include <cmath>

namespace kvo {

KvHeadDiagnostics diagnose_head(const HeadStep& s, std::vector<int64_t> positions) {
  KvHeadDiagnostics dg;
  dg.layer = s.layer;
  dg.kv_head = s.kv_head;
  dg.attended_tokens = int64_t(positions.size());
  std::vector<char> attended(static_cast<size_t>(s.start + s.q_len), 0);
  for (int64_t p : positions) attended[size_t(p)] = 1;
  dg.attended_positions = std::move(positions);
  const int D = s.head_dim;
  double mass = 0, err2 = 0, ref2 = 0;
  for (int g = 0; g < s.group; ++g)
    for (int64_t t = 0; t < s.q_len; ++t) {
      const int64_t col = int64_t(s.kv_head * s.group + g) * D;
      const float* qr = s.q + t * s.q_stride + col;
      const int64_t upto = s.start + t + 1;
      std::vector<double> sc(static_cast<size_t>(upto));
      double mx = -INFINITY;
      for (int64_t p = 0; p < upto; ++p) {
        const float* kr = s.key(p);
        double d = 0;
        for (int x = 0; x < D; ++x) d += double(qr[x]) * kr[x];
        sc[size_t(p)] = d * s.scale;
        mx = std::max(mx, sc[size_t(p)]);
      }
      double sum = 0, cover = 0;
      std::vector<double> o(static_cast<size_t>(D), 0.0);
      for (int64_t p = 0; p < upto; ++p) {
        const double w = std::exp(sc[size_t(p)] - mx);
        sum += w;
        if (attended[size_t(p)]) cover += w;
        const float* vr = s.value(p);
        for (int x = 0; x < D; ++x) o[size_t(x)] += w * vr[x];
      }
      mass += cover / sum;
      const float* os = s.out + t * s.q_stride + col;
      for (int x = 0; x < D; ++x) {
        const double ref = o[size_t(x)] / sum;
        err2 += (os[x] - ref) * (os[x] - ref);
        ref2 += ref * ref;
      }
    }
  dg.mass_covered = mass / double(s.group * s.q_len);
  dg.output_rel_error = ref2 > 0 ? std::sqrt(err2 / ref2) : 0.0;
  return dg;
}

}  // namespace kvo
