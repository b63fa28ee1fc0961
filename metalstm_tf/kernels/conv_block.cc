// Fused CPU kernels for the tail of a Conv-4 block: batch norm with the
// batch's own statistics, ReLU and 2x2 max-pooling (stride 2, VALID), forward
// (BatchNormReluPool) and backward (BatchNormReluPoolGrad).
//
// After the convolution these layers only move memory: TensorFlow's ops
// write the normalised activations, the ReLU output and the pooling indices
// to memory and read them back, forward and backward; on 84x84 images the
// first block's batch norm alone took twice its convolution. Here the forward
// pass reads x twice (moments, then normalise-ReLU-pool) and writes only the
// pooled output; the backward pass reads x twice and writes dx once,
// recomputing the normalised values and which element of each window was the
// maximum instead of storing them.
//
// Layout NHWC, float. With M = N * H * W, per channel:
//   mean = sum(x) / M, var = sum(x^2) / M - mean^2 (biased; sums in double)
//   rstd = 1 / sqrt(var + epsilon), a = gamma * (x - mean) * rstd + beta
//   y[n, i, j] = max(0, max of a over x[n, 2i..2i+1, 2j..2j+1])
// The convolution bias is an input because batch norm with batch statistics
// cancels it exactly: it changes no output, and its gradient is exactly zero.
// Backward, with g = dy at each window's (first) maximum where a > 0, else 0:
//   dbeta = sum(g), dgamma = sum(g * xhat), xhat = (x - mean) * rstd
//   dx = gamma * rstd * (g - dbeta / M - xhat * dgamma / M)
//
// Results are deterministic: the work is split by image, each image's
// partial sums are kept apart and added in image order.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/lib/core/threadpool.h"

namespace metalstm {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::errors::InvalidArgument;

// Channels are processed 8 at a time (one AVX2 register; narrower SIMD
// splits it), so C must be a multiple of kLanes.
constexpr int kLanes = 8;
typedef float V __attribute__((vector_size(kLanes * sizeof(float))));
typedef int VI __attribute__((vector_size(kLanes * sizeof(int))));

inline V Load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
inline void Store(float* p, V v) { std::memcpy(p, &v, sizeof(V)); }
inline V Max(V a, V b) { return a > b ? a : b; }

struct Dims {
  int64_t n, h, w, c, ho, wo;
  int64_t Count() const { return n * h * w; }
};

// Checks x [N, H, W, C] and the [C] vectors of inputs 1..num_vectors (on
// failure, ctx's status says why).
void CheckInputs(OpKernelContext* ctx, int num_vectors, Dims* d) {
  const Tensor& x = ctx->input(0);
  OP_REQUIRES(ctx, x.dims() == 4,
              InvalidArgument("x must be [N, H, W, C], got ",
                              x.shape().DebugString()));
  *d = Dims{x.dim_size(0), x.dim_size(1), x.dim_size(2), x.dim_size(3),
            x.dim_size(1) / 2, x.dim_size(2) / 2};
  OP_REQUIRES(ctx, d->n > 0 && d->h > 0 && d->w > 0,
              InvalidArgument("x must not be empty, got ",
                              x.shape().DebugString()));
  OP_REQUIRES(ctx, d->c % kLanes == 0,
              InvalidArgument("the channels of x must be a multiple of ",
                              kLanes, ", got ", d->c));
  for (int k = 1; k <= num_vectors; ++k) {
    OP_REQUIRES(ctx, ctx->input(k).shape() == TensorShape({d->c}),
                InvalidArgument("input ", k, " must be [", d->c, "], got ",
                                ctx->input(k).shape().DebugString()));
  }
}

// Two per-channel sums, kept apart per image ([N, 2, C] doubles) and added
// in image order, so that results do not depend on the threads.
class PerImageSums {
 public:
  PerImageSums(int64_t n, int64_t c) : n_(n), c_(c), v_(n * 2 * c, 0.0) {}
  double* First(int64_t image) { return &v_[image * 2 * c_]; }
  double* Second(int64_t image) { return First(image) + c_; }
  // The totals over images of channel k.
  void Total(int64_t k, double* first, double* second) const {
    *first = *second = 0.0;
    for (int64_t i = 0; i < n_; ++i) {
      *first += v_[i * 2 * c_ + k];
      *second += v_[i * 2 * c_ + c_ + k];
    }
  }

 private:
  int64_t n_, c_;
  std::vector<double> v_;
};

// Runs fn(image) for every image on the op's thread pool.
template <typename Fn>
void ForEachImage(OpKernelContext* ctx, const Dims& d, Fn fn) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  pool->ParallelFor(d.n, d.h * d.w * d.c * 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) fn(i);
  });
}

// Per-channel affine map of the normalisation: a = scale * x + shift.
void Affine(const Dims& d, const float* gamma, const float* beta,
            const float* mean, const float* rstd, std::vector<float>* scale,
            std::vector<float>* shift) {
  scale->resize(d.c);
  shift->resize(d.c);
  for (int64_t k = 0; k < d.c; ++k) {
    (*scale)[k] = gamma[k] * rstd[k];
    (*shift)[k] = beta[k] - mean[k] * (*scale)[k];
  }
}

// A 2x2 window at channels k..k+7: its elements x0..x3 (row-major), their
// normalised values' maximum m = max(s * x + t), and which element is the
// first (row-major) at the maximum (masks b0..b2; x3 if none). The backward
// pass recomputes it as the forward pass computed it.
struct Window {
  V x0, x1, x2, x3, m;
  VI b0, b1, b2;
};

inline Window At(const float* p, int64_t c, int64_t row, V s, V t) {
  Window w;
  w.x0 = Load(p);
  w.x1 = Load(p + c);
  w.x2 = Load(p + row);
  w.x3 = Load(p + row + c);
  const V a0 = s * w.x0 + t, a1 = s * w.x1 + t, a2 = s * w.x2 + t,
          a3 = s * w.x3 + t;
  w.m = Max(Max(a0, a1), Max(a2, a3));
  w.b0 = a0 == w.m;
  w.b1 = (a1 == w.m) & ~w.b0;
  w.b2 = (a2 == w.m) & ~(w.b0 | w.b1);
  return w;
}

class BatchNormReluPoolOp : public OpKernel {
 public:
  explicit BatchNormReluPoolOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("epsilon", &epsilon_));
  }

  void Compute(OpKernelContext* ctx) override {
    Dims d;
    CheckInputs(ctx, 3, &d);
    if (!ctx->status().ok()) return;
    const float* x = ctx->input(0).flat<float>().data();
    const float* gamma = ctx->input(2).flat<float>().data();
    const float* beta = ctx->input(3).flat<float>().data();
    Tensor *y_t, *mean_t, *rstd_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(
        0, TensorShape({d.n, d.ho, d.wo, d.c}), &y_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({d.c}), &mean_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({d.c}), &rstd_t));
    float* mean = mean_t->flat<float>().data();
    float* rstd = rstd_t->flat<float>().data();

    // Moments: per image, float sums along a row, added into doubles.
    const int64_t c = d.c, image = d.h * d.w * c;
    PerImageSums sums(d.n, c);
    ForEachImage(ctx, d, [&](int64_t i) {
      double* s = sums.First(i);
      double* q = sums.Second(i);
      std::vector<float> rs(c), rq(c);
      for (int64_t r = 0; r < d.h; ++r) {
        std::fill(rs.begin(), rs.end(), 0.f);
        std::fill(rq.begin(), rq.end(), 0.f);
        const float* p = x + i * image + r * d.w * c;
        for (int64_t j = 0; j < d.w; ++j, p += c) {
          for (int64_t k = 0; k < c; ++k) {
            rs[k] += p[k];
            rq[k] += p[k] * p[k];
          }
        }
        for (int64_t k = 0; k < c; ++k) {
          s[k] += rs[k];
          q[k] += rq[k];
        }
      }
    });
    const double count = static_cast<double>(d.Count());
    for (int64_t k = 0; k < c; ++k) {
      double s, q;
      sums.Total(k, &s, &q);
      const double m = s / count;
      const double var = std::max(0.0, q / count - m * m);
      mean[k] = static_cast<float>(m);
      rstd[k] = static_cast<float>(1.0 / std::sqrt(var + epsilon_));
    }

    std::vector<float> scale, shift;
    Affine(d, gamma, beta, mean, rstd, &scale, &shift);
    float* y = y_t->flat<float>().data();
    const int64_t row = d.w * c;
    ForEachImage(ctx, d, [&](int64_t i) {
      for (int64_t oi = 0; oi < d.ho; ++oi) {
        const float* top = x + i * image + 2 * oi * row;
        float* out = y + ((i * d.ho + oi) * d.wo) * c;
        for (int64_t oj = 0; oj < d.wo; ++oj) {
          const float* p = top + 2 * oj * c;
          for (int64_t k = 0; k < c; k += kLanes) {
            const Window w = At(p + k, c, row, Load(&scale[k]),
                                Load(&shift[k]));
            Store(out + oj * c + k, Max(w.m, V{}));
          }
        }
      }
    });
  }

 private:
  float epsilon_;
};

class BatchNormReluPoolGradOp : public OpKernel {
 public:
  explicit BatchNormReluPoolGradOp(OpKernelConstruction* ctx)
      : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    Dims d;
    CheckInputs(ctx, 5, &d);
    if (!ctx->status().ok()) return;
    const Tensor& dy_t = ctx->input(6);
    OP_REQUIRES(ctx, dy_t.shape() == TensorShape({d.n, d.ho, d.wo, d.c}),
                InvalidArgument("dy must be [", d.n, ", ", d.ho, ", ", d.wo,
                                ", ", d.c, "], got ",
                                dy_t.shape().DebugString()));
    const float* x = ctx->input(0).flat<float>().data();
    const float* gamma = ctx->input(2).flat<float>().data();
    const float* beta = ctx->input(3).flat<float>().data();
    const float* mean = ctx->input(4).flat<float>().data();
    const float* rstd = ctx->input(5).flat<float>().data();
    const float* dy = dy_t.flat<float>().data();
    Tensor *dx_t, *dbias_t, *dgamma_t, *dbeta_t;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, ctx->input(0).shape(), &dx_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({d.c}),
                                             &dbias_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({d.c}),
                                             &dgamma_t));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({d.c}),
                                             &dbeta_t));
    std::vector<float> scale, shift;
    Affine(d, gamma, beta, mean, rstd, &scale, &shift);

    // Pass 1: per image, sum(g) and sum(g * xhat) over the windows' maxima
    // (float along a row of windows, then added into doubles).
    const int64_t c = d.c, row = d.w * c, image = d.h * row;
    PerImageSums sums(d.n, c);
    ForEachImage(ctx, d, [&](int64_t i) {
      double* sg = sums.First(i);
      double* sgx = sums.Second(i);
      std::vector<float> rg(c), rgx(c);
      for (int64_t oi = 0; oi < d.ho; ++oi) {
        const float* top = x + i * image + 2 * oi * row;
        const float* g = dy + ((i * d.ho + oi) * d.wo) * c;
        std::fill(rg.begin(), rg.end(), 0.f);
        std::fill(rgx.begin(), rgx.end(), 0.f);
        for (int64_t oj = 0; oj < d.wo; ++oj) {
          const float* p = top + 2 * oj * c;
          for (int64_t k = 0; k < c; k += kLanes) {
            const Window w = At(p + k, c, row, Load(&scale[k]),
                                Load(&shift[k]));
            const V gk = w.m > 0.f ? Load(g + oj * c + k) : V{};
            const V xm = w.b0 ? w.x0 : w.b1 ? w.x1 : w.b2 ? w.x2 : w.x3;
            Store(&rg[k], Load(&rg[k]) + gk);
            Store(&rgx[k], Load(&rgx[k]) + gk * (xm - Load(mean + k)));
          }
        }
        for (int64_t k = 0; k < c; ++k) {
          sg[k] += rg[k];
          sgx[k] += static_cast<double>(rgx[k]) * rstd[k];
        }
      }
    });
    float* dbeta = dbeta_t->flat<float>().data();
    float* dgamma = dgamma_t->flat<float>().data();
    float* dbias = dbias_t->flat<float>().data();
    const double count = static_cast<double>(d.Count());
    std::vector<float> base(c), slope(c);  // dx = scale * (g - base - slope * xhat)
    for (int64_t k = 0; k < c; ++k) {
      double s, sx;
      sums.Total(k, &s, &sx);
      dbeta[k] = static_cast<float>(s);
      dgamma[k] = static_cast<float>(sx);
      dbias[k] = 0.f;
      base[k] = static_cast<float>(s / count);
      slope[k] = static_cast<float>(sx / count);
    }

    // Pass 2: dx = scale * g - (scale * base + scale * slope * xhat) at
    // every element, window by window; the rows and columns that no window
    // covers (odd H or W) get the second term only.
    float* dx = dx_t->flat<float>().data();
    std::vector<float> k0(c), k1(c);  // dx = k0 + k1 * x at non-maxima
    for (int64_t k = 0; k < c; ++k) {
      k1[k] = -scale[k] * slope[k] * rstd[k];
      k0[k] = -scale[k] * base[k] - k1[k] * mean[k];
    }
    ForEachImage(ctx, d, [&](int64_t i) {
      const float* xi = x + i * image;
      float* dxi = dx + i * image;
      for (int64_t oi = 0; oi < d.ho; ++oi) {
        const float* top = xi + 2 * oi * row;
        float* out = dxi + 2 * oi * row;
        const float* g = dy + ((i * d.ho + oi) * d.wo) * c;
        for (int64_t oj = 0; oj < d.wo; ++oj) {
          const float* p = top + 2 * oj * c;
          float* q = out + 2 * oj * c;
          for (int64_t k = 0; k < c; k += kLanes) {
            const V s = Load(&scale[k]);
            const Window w = At(p + k, c, row, s, Load(&shift[k]));
            // The first element at the maximum also takes scale * g.
            const V add = w.m > 0.f ? s * Load(g + oj * c + k) : V{};
            const V b = Load(&k0[k]), a = Load(&k1[k]);
            const VI b3 = ~(w.b0 | w.b1 | w.b2);
            Store(q + k, b + a * w.x0 + (w.b0 ? add : V{}));
            Store(q + k + c, b + a * w.x1 + (w.b1 ? add : V{}));
            Store(q + k + row, b + a * w.x2 + (w.b2 ? add : V{}));
            Store(q + k + row + c, b + a * w.x3 + (b3 ? add : V{}));
          }
        }
        for (int64_t r = 2 * oi; r < 2 * oi + 2 && d.w % 2; ++r) {
          for (int64_t k = 0; k < c; ++k) {
            const int64_t at = r * row + (d.w - 1) * c + k;
            dxi[at] = k0[k] + k1[k] * xi[at];
          }
        }
      }
      for (int64_t at = 2 * d.ho * row; at < image; ++at) {  // odd H
        const int64_t k = at % c;
        dxi[at] = k0[k] + k1[k] * xi[at];
      }
    });
  }
};

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

REGISTER_OP("BatchNormReluPool")
    .Input("x: float")
    .Input("bias: float")
    .Input("gamma: float")
    .Input("beta: float")
    .Output("y: float")
    .Output("mean: float")
    .Output("rstd: float")
    .Attr("epsilon: float = 1e-5")
    .SetShapeFn([](InferenceContext* ic) {
      ShapeHandle x;
      TF_RETURN_IF_ERROR(ic->WithRank(ic->input(0), 4, &x));
      DimensionHandle h, w;
      TF_RETURN_IF_ERROR(ic->Divide(ic->Dim(x, 1), 2, false, &h));
      TF_RETURN_IF_ERROR(ic->Divide(ic->Dim(x, 2), 2, false, &w));
      ic->set_output(0, ic->MakeShape({ic->Dim(x, 0), h, w, ic->Dim(x, 3)}));
      ic->set_output(1, ic->Vector(ic->Dim(x, 3)));
      ic->set_output(2, ic->Vector(ic->Dim(x, 3)));
      return absl::OkStatus();
    })
    .Doc("Batch norm (batch statistics), ReLU and 2x2 max-pool of NHWC x + "
         "bias (fused, CPU).");

REGISTER_OP("BatchNormReluPoolGrad")
    .Input("x: float")
    .Input("bias: float")
    .Input("gamma: float")
    .Input("beta: float")
    .Input("mean: float")
    .Input("rstd: float")
    .Input("dy: float")
    .Output("dx: float")
    .Output("dbias: float")
    .Output("dgamma: float")
    .Output("dbeta: float")
    .SetShapeFn([](InferenceContext* ic) {
      for (int k = 0; k < 4; ++k) ic->set_output(k, ic->input(k));
      return absl::OkStatus();
    })
    .Doc("Gradient of BatchNormReluPool.");

REGISTER_KERNEL_BUILDER(
    Name("BatchNormReluPool").Device(::tensorflow::DEVICE_CPU),
    BatchNormReluPoolOp);
REGISTER_KERNEL_BUILDER(
    Name("BatchNormReluPoolGrad").Device(::tensorflow::DEVICE_CPU),
    BatchNormReluPoolGradOp);

}  // namespace
}  // namespace metalstm
