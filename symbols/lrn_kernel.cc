// Cross-channel LRN as one MXNet operator library (lib_api.h, loaded by mx.library.load):
//
//   y_c = x_c * s_c^-beta,   s_c = knorm + alpha / nsize * sum of x_j^2 over the window of c
//
// forward and backward in one pass each over (N, C, H*W) float32, OpenMP over images and
// stretches of H*W. MXNet's own LRN backward runs oneDNN's reference kernel, and the same math
// from stock operators takes some twenty memory passes a step; this takes two. The backward
// recomputes s from x instead of keeping it:
//
//   dx_j = g_j s_j^-beta - 2 alpha beta / nsize * x_j * sum over the window of j of g_c y_c / s_c
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "mxnet/lib_api.h"

using mxnet::ext::MX_FAIL;
using mxnet::ext::MX_SUCCESS;
using mxnet::ext::MXReturnValue;
using mxnet::ext::MXTensor;
using mxnet::ext::OpResource;
using mxnet::ext::kFloat32;
using Attrs = std::unordered_map<std::string, std::string>;

namespace {

const int64_t kStretch = 512;   // floats of one plane handled per task: 5 planes fit in L1

struct Params {
  float alpha, beta, knorm;
  int nsize;
  explicit Params(const Attrs& attrs)
      : alpha(std::stof(attrs.at("alpha"))), beta(std::stof(attrs.at("beta"))),
        knorm(std::stof(attrs.at("knorm"))), nsize(std::stoi(attrs.at("nsize"))) {}
};

// A tensor as (N, C, H*W)
struct Planes {
  int64_t images, channels, plane;
  explicit Planes(const MXTensor& t)
      : images(t.shape[0]), channels(t.shape[1]), plane(t.size() / (t.shape[0] * t.shape[1])) {}
};

// s^-beta; beta = 0.75 (AlexNet's) as rsqrt(s) * sqrt(rsqrt(s)), which vectorises
inline float inverse_power(float s, float beta) {
  if (beta == 0.75f) {
    const float r = 1.0f / std::sqrt(s);
    return r * std::sqrt(r);
  }
  return std::pow(s, -beta);
}

// Calls body(plane_offset, length) for every stretch of every image, in parallel; the offset
// is that of channel 0, and channel c's values start c * plane later.
template <typename Body>
void for_each_stretch(int64_t images, int64_t channels, int64_t plane, Body body) {
  const int64_t per_image = (plane + kStretch - 1) / kStretch;
  const int64_t tasks = images * per_image;
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t n = task / per_image, start = (task % per_image) * kStretch;
    const int64_t length = std::min(kStretch, plane - start);
    body(n * channels * plane + start, length);
  }
}

// s of channel c over one stretch, into scale[0..length)
inline void window_scale(const float* x, int64_t c, int64_t channels, int64_t plane,
                         int64_t length, const Params& p, float* scale) {
  const int half = p.nsize / 2;
  const int64_t first = std::max<int64_t>(0, c - half);
  const int64_t last = std::min<int64_t>(channels - 1, c + half);
  const float a = p.alpha / p.nsize;
  for (int64_t i = 0; i < length; ++i) scale[i] = 0.0f;
  for (int64_t j = first; j <= last; ++j) {
    const float* xj = x + j * plane;
    for (int64_t i = 0; i < length; ++i) scale[i] += xj[i] * xj[i];
  }
  for (int64_t i = 0; i < length; ++i) scale[i] = p.knorm + a * scale[i];
}

MXReturnValue forward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                      std::vector<MXTensor>* outputs, const OpResource& res) {
  const Params p(attrs);
  const Planes v((*inputs)[0]);
  const int64_t channels = v.channels, plane = v.plane;
  const float* x = (*inputs)[0].data<float>();
  float* y = (*outputs)[0].data<float>();
  for_each_stretch(v.images, channels, plane, [&](int64_t offset, int64_t length) {
    float scale[kStretch];
    for (int64_t c = 0; c < channels; ++c) {
      window_scale(x + offset, c, channels, plane, length, p, scale);
      const float* xc = x + offset + c * plane;
      float* yc = y + offset + c * plane;
      for (int64_t i = 0; i < length; ++i) yc[i] = xc[i] * inverse_power(scale[i], p.beta);
    }
  });
  return MX_SUCCESS;
}

// inputs: output gradient, x, y; outputs: input gradient
MXReturnValue backward(const Attrs& attrs, std::vector<MXTensor>* inputs,
                       std::vector<MXTensor>* outputs, const OpResource& res) {
  const Params p(attrs);
  const Planes v((*inputs)[1]);
  const int64_t channels = v.channels, plane = v.plane;
  const float* g = (*inputs)[0].data<float>();
  const float* x = (*inputs)[1].data<float>();
  const float* y = (*inputs)[2].data<float>();
  float* dx = (*outputs)[0].data<float>();
  const int half = p.nsize / 2;
  const float coefficient = 2.0f * p.alpha * p.beta / p.nsize;
  for_each_stretch(v.images, channels, plane, [&](int64_t offset, int64_t length) {
    // ratio[c % nsize] holds g_c y_c / s_c for the channels of the current window
    std::vector<float> ratio(static_cast<size_t>(p.nsize) * kStretch);
    float scale[kStretch], sum[kStretch];
    auto fill = [&](int64_t c) {    // ratio of channel c, and dx's first term into dx
      window_scale(x + offset, c, channels, plane, length, p, scale);
      const float* gc = g + offset + c * plane;
      const float* yc = y + offset + c * plane;
      float* rc = ratio.data() + (c % p.nsize) * kStretch;
      float* dxc = dx + offset + c * plane;
      for (int64_t i = 0; i < length; ++i) {
        rc[i] = gc[i] * yc[i] / scale[i];
        dxc[i] = gc[i] * inverse_power(scale[i], p.beta);
      }
    };
    for (int64_t c = 0; c < std::min<int64_t>(half, channels); ++c) fill(c);
    for (int64_t c = 0; c < channels; ++c) {
      if (c + half < channels) fill(c + half);
      const int64_t first = std::max<int64_t>(0, c - half);
      const int64_t last = std::min<int64_t>(channels - 1, c + half);
      for (int64_t i = 0; i < length; ++i) sum[i] = 0.0f;
      for (int64_t j = first; j <= last; ++j) {
        const float* rj = ratio.data() + (j % p.nsize) * kStretch;
        for (int64_t i = 0; i < length; ++i) sum[i] += rj[i];
      }
      const float* xc = x + offset + c * plane;
      float* dxc = dx + offset + c * plane;
      for (int64_t i = 0; i < length; ++i) dxc[i] -= coefficient * xc[i] * sum[i];
    }
  });
  return MX_SUCCESS;
}

MXReturnValue parse_attrs(const Attrs& attrs, int* num_in, int* num_out) {
  for (const char* name : {"alpha", "beta", "knorm", "nsize"}) {
    if (!attrs.count(name)) {
      MX_ERROR_MSG << "lrn_fused needs the attribute " << name;
      return MX_FAIL;
    }
  }
  const Params p(attrs);
  if (p.nsize < 1 || p.nsize % 2 == 0 || !(p.knorm > 0.0f)) {
    MX_ERROR_MSG << "lrn_fused needs an odd nsize and knorm > 0";
    return MX_FAIL;
  }
  *num_in = 1;
  *num_out = 1;
  return MX_SUCCESS;
}

MXReturnValue infer_type(const Attrs& attrs, std::vector<int>* in_types,
                         std::vector<int>* out_types) {
  if ((*in_types)[0] != kFloat32) {
    MX_ERROR_MSG << "lrn_fused computes in float32 only";
    return MX_FAIL;
  }
  (*out_types)[0] = kFloat32;
  return MX_SUCCESS;
}

MXReturnValue infer_shape(const Attrs& attrs, std::vector<std::vector<unsigned int>>* in_shapes,
                          std::vector<std::vector<unsigned int>>* out_shapes) {
  if ((*in_shapes)[0].size() < 3) {
    MX_ERROR_MSG << "lrn_fused needs (N, C, ...) input";
    return MX_FAIL;
  }
  (*out_shapes)[0] = (*in_shapes)[0];
  return MX_SUCCESS;
}

}  // namespace

REGISTER_OP(lrn_fused)
.setForward(forward, "cpu")
.setBackward(backward, "cpu")
.setParseAttrs(parse_attrs)
.setInferType(infer_type)
.setInferShape(infer_shape);

MXReturnValue initialize(int version) {
  return version >= 10900 ? MX_SUCCESS : MX_FAIL;
}
