// Fused CPU kernels for one step of the meta-learner's two coordinate-wise
// layers (MetaLstmStep) and its gradient (MetaLstmStepGrad), and the log/sign
// preprocessing of its inputs as one op (LogAndSign, at the end).
//
// The layer-1 LSTM runs over every learner coordinate (about 30,000 of them)
// with 20 hidden units: per step, TensorFlow's ops write the [80, P] gate
// pre-activations and a dozen [20, P] intermediates to memory and read them
// back, forward and backward, and that memory traffic dominates the
// meta-learner's time on a CPU; layer 2 adds a few dozen small ops over [P]
// vectors. These kernels compute one step for a chunk of 64 (AVX2) or 128
// (AVX-512) coordinates at a time with everything in registers and L1: the
// gate products, the activations, the cell update, the layer-2 gates and the
// parameter update (forward), and all their gradients (backward).
//
// Layout (feature-major, like metalstm_tf/update_rules/meta_lstm.py):
//   x [n_in, P]  per-coordinate inputs      h, c [H, P]  state
//   wx [n_in, 4H], wh [H, 4H], b [4H]       gate order i, f, g, o
//   z = wx^T x + wh^T h + b;  i, f, o = sigmoid(z_i, z_f, z_o); g = tanh(z_g)
//   c' = f c + i g;  h' = o tanh(c')
// Layer 2 (the meta cell; its cell state is the learner's parameters):
//   theta, grad, f_prev, i_prev [P]; w2 [2, H + 2] (rows: forget, input
//   gate; columns: h', theta, previous gate); b2 [2]
//   f = sigmoid(w2[0] . [h'; theta; f_prev] + b2[0])
//   i = sigmoid(w2[1] . [h'; theta; i_prev] + b2[1])
//   theta' = f theta - i grad
// The backward kernel recomputes the gates from x, h and c: on a CPU that is
// cheaper than writing the [4H, P] activations to memory and reading them
// back. Layer 2's gradient to h' is added to dh_out in registers.
//
// Results are deterministic: the work is split into fixed blocks of
// coordinates, each block's weight-gradient partial sum is kept apart, and
// the partials are added in block order.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

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

// One vector register: 16 floats where the compiler targets AVX-512, else 8
// (AVX2; narrower SIMD splits the 8-float vectors).
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#else
constexpr int kLanes = 8;
#endif
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
typedef int VecI __attribute__((vector_size(kLanes * sizeof(int))));

// A chunk row is one register block of 8 vectors: the products keep a row's
// 8 accumulators in registers (chunks of 2-8 register blocks, looping over
// them, measured slower).
constexpr int kVecs = 8;                   // vectors per chunk row
constexpr int kChunk = kLanes * kVecs;     // coordinates per chunk (64/128)
constexpr int kChunksPerBlock = 1024 / kChunk;  // 1,024 coordinates per block
static_assert(kVecs == 8, "RowDot below is written for 8 vectors");

// All lanes v: one broadcast (`Vec{} + v` compiles to an add before it).
inline Vec Splat(float v) {
#if defined(__AVX512F__)
  return reinterpret_cast<Vec>(_mm512_set1_ps(v));
#elif defined(__AVX2__)
  return reinterpret_cast<Vec>(_mm256_set1_ps(v));
#else
  return Vec{} + v;
#endif
}

// exp of a vector (Cephes' expf polynomial, |relative error| < 2e-7 on the
// clamped range); NaN in gives NaN out.
inline Vec Exp(Vec x) {
  const Vec hi = Splat(88.3762626647949f), lo = Splat(-87.3365447505531f);
  x = x > hi ? hi : x;
  x = x < lo ? lo : x;
  Vec fx = x * Splat(1.44269504088896341f);
  fx = fx + (fx >= Splat(0.f) ? Splat(0.5f) : Splat(-0.5f));
  VecI n = __builtin_convertvector(fx, VecI);     // round half away from 0
  Vec nf = __builtin_convertvector(n, Vec);
  Vec r = x - nf * Splat(0.693359375f) + nf * Splat(2.12194440e-4f);
  Vec y = Splat(1.9875691500e-4f);
  y = y * r + Splat(1.3981999507e-3f);
  y = y * r + Splat(8.3334519073e-3f);
  y = y * r + Splat(4.1665795894e-2f);
  y = y * r + Splat(1.6666665459e-1f);
  y = y * r + Splat(5.0000001201e-1f);
  y = y * r * r + r + Splat(1.f);
  VecI bits = (n + 127) << 23;
  Vec scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return y * scale;
}

// 1 / d for d >= 1. With AVX-512: the 14-bit reciprocal estimate refined by
// one Newton step (relative error below 1e-7), a few times cheaper than the
// division, which dominated the activations' time. Elsewhere the division:
// AVX2's 12-bit estimate and a Newton step give 1 - 2^-24 at d = 1, so a
// saturated gate would no longer be exactly 1.
inline Vec Reciprocal(Vec d) {
#if defined(__AVX512F__)
  const Vec r =
      reinterpret_cast<Vec>(_mm512_rcp14_ps(reinterpret_cast<__m512>(d)));
  return r * (Splat(2.f) - d * r);
#else
  return Splat(1.f) / d;
#endif
}

#if defined(__AVX512F__) || defined(__AVX2__)
// t rounded to the nearest integer (ties to even), as a float.
inline Vec RoundToInt(Vec t) {
#if defined(__AVX512F__)
  return reinterpret_cast<Vec>(_mm512_roundscale_ps(
      reinterpret_cast<__m512>(t), _MM_FROUND_TO_NEAREST_INT |
                                       _MM_FROUND_NO_EXC));
#else
  return reinterpret_cast<Vec>(_mm256_round_ps(
      reinterpret_cast<__m256>(t), _MM_FROUND_TO_NEAREST_INT |
                                       _MM_FROUND_NO_EXC));
#endif
}

// p 2^n for an integral n in [-126, 126] (NaN in p or n gives NaN).
inline Vec TimesPow2(Vec p, Vec n) {
#if defined(__AVX512F__)
  return reinterpret_cast<Vec>(
      _mm512_scalef_ps(reinterpret_cast<__m512>(p), reinterpret_cast<__m512>(n)));
#else
  const VecI bits = (__builtin_convertvector(n, VecI) + 127) << 23;
  Vec scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
#endif
}

// sigmoid(x) = 1 / (1 + 2^t), t = -x log2(e) clamped to [-126, 126]: 2^t as
// p(t - n) 2^n, n = round(t), with a degree-5 fit p of 2^f on [-1/2, 1/2]
// (float relative error below 3e-7): about half the instructions of the
// generic Exp above. NaN in gives NaN out (the clamps keep a NaN t).
inline Vec Sigmoid(Vec x) {
  Vec t = x * Splat(-1.44269504088896341f);
  t = t < Splat(-126.f) ? Splat(-126.f) : t;
  t = t > Splat(126.f) ? Splat(126.f) : t;
  const Vec n = RoundToInt(t);
  const Vec f = t - n;
  Vec p = Splat(1.3266970636e-3f);
  p = p * f + Splat(9.6754599362e-3f);
  p = p * f + Splat(5.5507425219e-2f);
  p = p * f + Splat(2.4022121727e-1f);
  p = p * f + Splat(6.9314694405e-1f);
  p = p * f + Splat(1.0000001192f);
  return Reciprocal(Splat(1.f) + TimesPow2(p, n));
}
#else
inline Vec Sigmoid(Vec x) { return Reciprocal(Splat(1.f) + Exp(-x)); }
#endif
inline Vec Tanh(Vec x) { return Splat(2.f) * Sigmoid(x + x) - Splat(1.f); }

// Copies one full chunk row (kChunk floats) vector by vector, which compiles
// to inlined vector moves; one memcpy of the whole row compiles to a library
// call.
inline void CopyChunkRow(float* dst, const float* src) {
  for (int j = 0; j < kVecs; ++j) {
    std::memcpy(dst + j * kLanes, src + j * kLanes, sizeof(Vec));
  }
}

// A [rows, kChunk] tile of coordinates [p0, p0 + n) of a [rows, P] matrix.
struct Tile {
  explicit Tile(int rows)
      : rows(rows), data(static_cast<size_t>(rows) * kVecs) {}
  Vec* row(int r) { return &data[static_cast<size_t>(r) * kVecs]; }
  void Load(const float* src, int64_t stride, int64_t p0, int n, int row0 = 0,
            int count = -1) {
    if (count < 0) count = rows - row0;
    for (int r = 0; r < count; ++r) {
      float* dst = reinterpret_cast<float*>(row(row0 + r));
      if (n == kChunk) {
        CopyChunkRow(dst, src + r * stride + p0);
      } else {
        std::memcpy(dst, src + r * stride + p0, n * sizeof(float));
        std::memset(dst + n, 0, (kChunk - n) * sizeof(float));
      }
    }
  }
  void Store(float* dst, int64_t stride, int64_t p0, int n, int row0 = 0,
             int count = -1) {
    if (count < 0) count = rows - row0;
    for (int r = 0; r < count; ++r) {
      const float* src = reinterpret_cast<const float*>(row(row0 + r));
      if (n == kChunk) {
        CopyChunkRow(dst + r * stride + p0, src);
      } else {
        std::memcpy(dst + r * stride + p0, src, n * sizeof(float));
      }
    }
  }
  int rows;
  std::vector<Vec> data;
};

struct Dims {
  int n_in, hidden, gates, features;
  int64_t p;
};

// Fills `*d` from the inputs; on bad shapes, fails `ctx` (check its status).
void CheckInputs(OpKernelContext* ctx, Dims* out) {
  const Tensor& x = ctx->input(0);
  const Tensor& h = ctx->input(1);
  const Tensor& c = ctx->input(2);
  const Tensor& wx = ctx->input(3);
  const Tensor& wh = ctx->input(4);
  const Tensor& b = ctx->input(5);
  Dims& d = *out;
  OP_REQUIRES(ctx, x.dims() == 2 && h.dims() == 2 && c.dims() == 2,
              InvalidArgument("x, h and c must be [rows, P] matrices"));
  d.n_in = static_cast<int>(x.dim_size(0));
  d.hidden = static_cast<int>(h.dim_size(0));
  d.gates = 4 * d.hidden;
  d.features = d.n_in + d.hidden;
  d.p = x.dim_size(1);
  OP_REQUIRES(ctx, h.dim_size(1) == d.p && c.shape() == h.shape(),
              InvalidArgument("h and c must be [hidden, P] like x's P"));
  OP_REQUIRES(ctx, wx.dims() == 2 && wx.dim_size(0) == d.n_in &&
                       wx.dim_size(1) == d.gates,
              InvalidArgument("wx must be [n_in, 4 * hidden]"));
  OP_REQUIRES(ctx, wh.dims() == 2 && wh.dim_size(0) == d.hidden &&
                       wh.dim_size(1) == d.gates,
              InvalidArgument("wh must be [hidden, 4 * hidden]"));
  OP_REQUIRES(ctx, b.dims() == 1 && b.dim_size(0) == d.gates,
              InvalidArgument("b must be [4 * hidden]"));
}

// The sums of `blocks` partial sums of `size` entries each, added in block
// order (deterministic).
std::vector<float> SumPartials(const std::vector<float>& partials,
                               int64_t blocks, int64_t size) {
  std::vector<float> total(size, 0.f);
  for (int64_t blk = 0; blk < blocks; ++blk) {
    for (int64_t e = 0; e < size; ++e) total[e] += partials[blk * size + e];
  }
  return total;
}

// [features, gates] weights: wx's rows, then wh's.
std::vector<float> StackWeights(const Tensor& wx, const Tensor& wh) {
  std::vector<float> w(wx.NumElements() + wh.NumElements());
  std::copy_n(wx.flat<float>().data(), wx.NumElements(), w.begin());
  std::copy_n(wh.flat<float>().data(), wh.NumElements(),
              w.begin() + wx.NumElements());
  return w;
}

// Vectors of a chunk row that Gates below keeps in registers at a time, for
// each of its two gates: all 8 with AVX-512's 32 registers; 4 with AVX2's
// 16 (2 x 8 accumulators spilled three of them on every multiply-add).
#if defined(__AVX512F__)
constexpr int kGateVecs = kVecs;
#else
constexpr int kGateVecs = kVecs / 2;
#endif

// z[j] <- tanh(a[j]) or sigmoid(a[j]) for kGateVecs vectors.
inline void Activate(const Vec* a, bool tanh, Vec* z) {
  if (tanh) {
    for (int j = 0; j < kGateVecs; ++j) z[j] = Tanh(a[j]);
  } else {
    for (int j = 0; j < kGateVecs; ++j) z[j] = Sigmoid(a[j]);
  }
}

// z <- activations i, f, g, o of the gate pre-activations W^T [x; h] + b for
// one chunk (`w` is [features, gates]), two gates at a time (each loaded
// [x; h] vector serves two products), kGateVecs vectors of the chunk row at a
// time. Not inlined: GCC allocates the register blocks best in a function of
// their own (measured).
__attribute__((noinline)) void Gates(Tile& xh, const float* w, const float* b,
                                     int F, int H, Tile* z) {
  const int G = 4 * H;  // even
  for (int g = 0; g < G; g += 2) {
    // With an odd H, a pair can straddle the tanh (g) block's edge.
    const bool tanh0 = g >= 2 * H && g < 3 * H;
    const bool tanh1 = g + 1 >= 2 * H && g + 1 < 3 * H;
    for (int j0 = 0; j0 < kVecs; j0 += kGateVecs) {
      Vec a0[kGateVecs], a1[kGateVecs];
      for (int j = 0; j < kGateVecs; ++j) {
        a0[j] = Splat(b[g]);
        a1[j] = Splat(b[g + 1]);
      }
      for (int k = 0; k < F; ++k) {
        const Vec u0 = Splat(w[k * G + g]), u1 = Splat(w[k * G + g + 1]);
        const Vec* xr = xh.row(k) + j0;
        for (int j = 0; j < kGateVecs; ++j) {
          a0[j] += u0 * xr[j];
          a1[j] += u1 * xr[j];
        }
      }
      Activate(a0, tanh0, z->row(g) + j0);
      Activate(a1, tanh1, z->row(g + 1) + j0);
    }
  }
}

// The sum of a chunk row's kVecs products a[j] * b[j], as one vector.
inline Vec RowDot(const Vec* a, const Vec* b) {
  const Vec s0 = a[0] * b[0] + a[1] * b[1];
  const Vec s1 = a[2] * b[2] + a[3] * b[3];
  const Vec s2 = a[4] * b[4] + a[5] * b[5];
  const Vec s3 = a[6] * b[6] + a[7] * b[7];
  return (s0 + s1) + (s2 + s3);
}

// For one chunk: d[x; h] = W dz into `dxh`, and dW += [x; h] dz^T into the
// lane-wise partial sums `dw` [F, G].
__attribute__((noinline)) void Products(Tile& xh, Tile& dz, const float* w,
                                        int F, int G, Vec* __restrict dw,
                                        Tile* dxh) {
  // kVecs independent accumulators per row.
  for (int k = 0; k < F; ++k) {
    Vec acc[kVecs];
    for (int j = 0; j < kVecs; ++j) acc[j] = Splat(0.f);
    const float* wk = &w[static_cast<size_t>(k) * G];
    for (int g = 0; g < G; ++g) {
      const Vec wkg = Splat(wk[g]);
      const Vec* dzr = dz.row(g);
      for (int j = 0; j < kVecs; ++j) acc[j] += wkg * dzr[j];
    }
    Vec* out = dxh->row(k);
    for (int j = 0; j < kVecs; ++j) out[j] = acc[j];
  }
  for (int k = 0; k < F; ++k) {
    const Vec* xr = xh.row(k);
    Vec* dwk = dw + static_cast<size_t>(k) * G;
    for (int g = 0; g < G; ++g) {
      dwk[g] += RowDot(xr, dz.row(g));
    }
  }
}

// The layer-2 weights [2, H + 2] (rows: forget gate, input gate; columns:
// h, theta, previous gate) and the gates of one chunk, from layer 1's new
// hidden state `hn` (rows hn_row0 ...) and the tile `l2` (rows theta, grad,
// f_prev, i_prev).
struct Layer2 {
  const float *w0, *w1, *b;
  int hidden;

  void Gates(Tile& hn, int hn_row0, Tile& l2, Vec* f, Vec* i) const {
    const int H = hidden;
    const Vec *theta = l2.row(0), *fp = l2.row(2), *ip = l2.row(3);
    for (int j = 0; j < kVecs; ++j) {
      f[j] = Splat(b[0]) + w0[H] * theta[j] + w0[H + 1] * fp[j];
      i[j] = Splat(b[1]) + w1[H] * theta[j] + w1[H + 1] * ip[j];
    }
    for (int r = 0; r < H; ++r) {
      const Vec* hr = hn.row(hn_row0 + r);
      for (int j = 0; j < kVecs; ++j) {
        f[j] += w0[r] * hr[j];
        i[j] += w1[r] * hr[j];
      }
    }
    for (int j = 0; j < kVecs; ++j) {
      f[j] = Sigmoid(f[j]);
      i[j] = Sigmoid(i[j]);
    }
  }
};

// What both kernels read: the inputs of the forward op.
struct StepInputs {
  // Fails `ctx` on bad shapes (check its status before use).
  explicit StepInputs(OpKernelContext* ctx) : ctx(ctx) {
    CheckInputs(ctx, &d);
    if (!ctx->status().ok()) return;
    for (int k = 6; k < 10; ++k) {
      OP_REQUIRES(ctx, ctx->input(k).shape() == TensorShape({d.p}),
                  InvalidArgument("theta, grad, f_prev and i_prev must be "
                                  "[P] vectors, P = x's second dimension"));
    }
    OP_REQUIRES(ctx, ctx->input(10).shape() == TensorShape({2, d.hidden + 2}),
                InvalidArgument("w2 must be [2, hidden + 2]"));
    OP_REQUIRES(ctx, ctx->input(11).shape() == TensorShape({2}),
                InvalidArgument("b2 must be [2]"));
    w = StackWeights(ctx->input(3), ctx->input(4));
    b = ctx->input(5).flat<float>().data();
    x = ctx->input(0).flat<float>().data();
    h = ctx->input(1).flat<float>().data();
    c = ctx->input(2).flat<float>().data();
    for (int k = 0; k < 4; ++k) l2[k] = ctx->input(6 + k).flat<float>().data();
    const float* w2 = ctx->input(10).flat<float>().data();
    layer2 = Layer2{w2, w2 + d.hidden + 2, ctx->input(11).flat<float>().data(),
                    d.hidden};
    chunks = (d.p + kChunk - 1) / kChunk;
    blocks = (chunks + kChunksPerBlock - 1) / kChunksPerBlock;
  }

  // Runs fn(block, first_chunk, end_chunk) for the fixed blocks of chunks,
  // in parallel on the op's thread pool (`cost`: per coordinate).
  template <typename Fn>
  void ForEachBlock(int64_t cost, Fn fn) const {
    auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    pool->ParallelFor(blocks, cost * kChunk * kChunksPerBlock,
                      [&](int64_t begin, int64_t end) {
      for (int64_t blk = begin; blk < end; ++blk) {
        fn(blk, blk * kChunksPerBlock,
           std::min(chunks, (blk + 1) * kChunksPerBlock));
      }
    });
  }

  // Valid coordinates of chunk `ch` (starting at ch * kChunk).
  int Valid(int64_t ch) const {
    return static_cast<int>(std::min<int64_t>(kChunk, d.p - ch * kChunk));
  }

  // Loads [x; h], c and the layer-2 inputs of a chunk, and computes its
  // layer-1 gate activations.
  void Load(int64_t p0, int n, Tile* xh, Tile* cs, Tile* l2_in,
            Tile* z) const {
    xh->Load(x, d.p, p0, n, 0, d.n_in);
    xh->Load(h, d.p, p0, n, d.n_in, d.hidden);
    cs->Load(c, d.p, p0, n);
    for (int k = 0; k < 4; ++k) l2_in->Load(l2[k], d.p, p0, n, k, 1);
    Gates(*xh, w.data(), b, d.features, d.hidden, z);
  }

  OpKernelContext* ctx;
  Dims d;
  std::vector<float> w;
  const float *b = nullptr, *x = nullptr, *h = nullptr, *c = nullptr;
  const float* l2[4] = {};  // theta, grad, f_prev, i_prev
  Layer2 layer2{};
  int64_t chunks = 0, blocks = 0;
};

// Allocates N outputs of `ctx` from number `first` on, each [P], into `out`;
// false (and `ctx` failed) on error.
template <int N>
bool AllocateVectors(OpKernelContext* ctx, int first, int64_t p,
                     float* (&out)[N]) {
  for (int k = 0; k < N; ++k) {
    Tensor* t;
    auto status = ctx->allocate_output(first + k, TensorShape({p}), &t);
    if (!status.ok()) {
      ctx->SetStatus(status);
      return false;
    }
    out[k] = t->flat<float>().data();
  }
  return true;
}

class MetaLstmStepOp : public OpKernel {
 public:
  explicit MetaLstmStepOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const StepInputs in(ctx);
    if (!ctx->status().ok()) return;
    const int H = in.d.hidden, G = in.d.gates, F = in.d.features;
    const int64_t P = in.d.p;
    Tensor *h_out, *c_out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({H, P}), &h_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({H, P}), &c_out));
    float* vec_out[3];  // theta_out, f, i
    if (!AllocateVectors(ctx, 2, P, vec_out)) return;
    float* ho = h_out->flat<float>().data();
    float* co = c_out->flat<float>().data();
    in.ForEachBlock(2 * F * G + 40 * G, [&](int64_t, int64_t ch0,
                                             int64_t ch1) {
      Tile xh(F), cs(H), l2(4), z(G), out(3);
      for (int64_t ch = ch0; ch < ch1; ++ch) {
        const int64_t p0 = ch * kChunk;
        const int n = in.Valid(ch);
        in.Load(p0, n, &xh, &cs, &l2, &z);
        for (int r = 0; r < H; ++r) {
          Vec *i = z.row(r), *f = z.row(H + r), *gg = z.row(2 * H + r),
              *o = z.row(3 * H + r), *cr = cs.row(r),
              *hr = xh.row(in.d.n_in + r);
          for (int j = 0; j < kVecs; ++j) {
            cr[j] = f[j] * cr[j] + i[j] * gg[j];
            hr[j] = o[j] * Tanh(cr[j]);
          }
        }
        // Layer 2 on the new hidden state (now in xh's h rows).
        Vec *f2 = out.row(1), *i2 = out.row(2), *theta = out.row(0);
        in.layer2.Gates(xh, in.d.n_in, l2, f2, i2);
        for (int j = 0; j < kVecs; ++j) {
          theta[j] = f2[j] * l2.row(0)[j] - i2[j] * l2.row(1)[j];
        }
        cs.Store(co, P, p0, n);
        xh.Store(ho, P, p0, n, in.d.n_in, H);
        for (int k = 0; k < 3; ++k) out.Store(vec_out[k], P, p0, n, k, 1);
      }
    });
  }
};

class MetaLstmStepGradOp : public OpKernel {
 public:
  explicit MetaLstmStepGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const StepInputs in(ctx);
    if (!ctx->status().ok()) return;
    const Dims& d = in.d;
    const int H = d.hidden, G = d.gates, F = d.features, NI = d.n_in;
    for (int i = 12; i < 14; ++i) {
      OP_REQUIRES(ctx, ctx->input(i).shape() == TensorShape({H, d.p}),
                  InvalidArgument("dh_out and dc_out must be [hidden, P]"));
    }
    for (int i = 14; i < 17; ++i) {
      OP_REQUIRES(ctx, ctx->input(i).shape() == TensorShape({d.p}),
                  InvalidArgument("dtheta_out, df and di must be [P]"));
    }
    Tensor *dx, *dh, *dc, *dwx, *dwh, *db, *dw2, *db2;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({NI, d.p}), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({H, d.p}), &dh));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({H, d.p}), &dc));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({NI, G}), &dwx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({H, G}), &dwh));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(5, TensorShape({G}), &db));
    float* vec_out[4];  // dtheta, dgrad, df_prev, di_prev
    if (!AllocateVectors(ctx, 6, d.p, vec_out)) return;
    OP_REQUIRES_OK(ctx,
                   ctx->allocate_output(10, TensorShape({2, H + 2}), &dw2));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(11, TensorShape({2}), &db2));
    const float* dh_out = ctx->input(12).flat<float>().data();
    const float* dc_out = ctx->input(13).flat<float>().data();
    const float* d_vec[3];  // dtheta_out, df, di
    for (int k = 0; k < 3; ++k) {
      d_vec[k] = ctx->input(14 + k).flat<float>().data();
    }
    float* dxo = dx->flat<float>().data();
    float* dho = dh->flat<float>().data();
    float* dco = dc->flat<float>().data();
    const float* w = in.w.data();
    const Layer2& l2w = in.layer2;
    // Per block, lane-wise sums (in the block's own buffer, which stays in
    // cache) of the layer-1 weight gradient [F, G], its bias gradient [G],
    // the layer-2 weight gradient [2, H + 2] and bias gradient [2]; at the
    // block's end its lanes are added into `partials`, and the blocks'
    // partials in block order: a fixed order of additions.
    const int64_t l1_size = int64_t{F} * G + G;
    const int64_t partial_size = l1_size + 2 * (H + 2) + 2;
    std::vector<float> partials(in.blocks * partial_size);
    in.ForEachBlock(5 * F * G + 60 * G, [&](int64_t blk, int64_t ch0,
                                             int64_t ch1) {
      Tile a(G), xh(F), cp(H), l2(4), d2(3), tc(H), hn(H), dht(H), dct(H),
          dz(G), dxh(F);
      std::vector<Vec> lanes(partial_size, Splat(0.f));
      Vec* dw = lanes.data();
      Vec* dbias = dw + int64_t{F} * G;
      Vec *dw2_f = dw + l1_size, *dw2_i = dw2_f + H + 2,
          *db2_ = dw2_i + H + 2;
      const Vec one = Splat(1.f);
      for (int64_t ch = ch0; ch < ch1; ++ch) {
        const int64_t p0 = ch * kChunk;
        const int n = in.Valid(ch);
        in.Load(p0, n, &xh, &cp, &l2, &a);  // gates recomputed, not stored
        dht.Load(dh_out, d.p, p0, n);
        dct.Load(dc_out, d.p, p0, n);
        for (int k = 0; k < 3; ++k) d2.Load(d_vec[k], d.p, p0, n, k, 1);
        // Layer 1's new state: tanh(c') and h'.
        for (int r = 0; r < H; ++r) {
          const Vec *i = a.row(r), *f = a.row(H + r), *g = a.row(2 * H + r),
                    *o = a.row(3 * H + r), *cpr = cp.row(r);
          Vec *tcr = tc.row(r), *hnr = hn.row(r);
          for (int j = 0; j < kVecs; ++j) {
            tcr[j] = Tanh(f[j] * cpr[j] + i[j] * g[j]);
            hnr[j] = o[j] * tcr[j];
          }
        }
        // Layer 2 backward; its gradient to h' joins dh_out.
        Vec f2[kVecs], i2[kVecs], dzf[kVecs], dzi[kVecs];
        l2w.Gates(hn, 0, l2, f2, i2);
        {
          Vec *theta = l2.row(0), *grad = l2.row(1), *fp = l2.row(2),
              *ip = l2.row(3);
          const Vec *dth = d2.row(0), *df = d2.row(1), *di = d2.row(2);
          for (int j = 0; j < kVecs; ++j) {
            dzf[j] = (df[j] + dth[j] * theta[j]) * f2[j] * (one - f2[j]);
            dzi[j] = (di[j] - dth[j] * grad[j]) * i2[j] * (one - i2[j]);
          }
          dw2_f[H] += RowDot(theta, dzf);
          dw2_f[H + 1] += RowDot(fp, dzf);
          dw2_i[H] += RowDot(theta, dzi);
          dw2_i[H + 1] += RowDot(ip, dzi);
          Vec sf = Splat(0.f), si = Splat(0.f);
          for (int j = 0; j < kVecs; ++j) {
            sf += dzf[j];
            si += dzi[j];
          }
          db2_[0] += sf;
          db2_[1] += si;
          // In place: d theta, d grad, d f_prev, d i_prev.
          for (int j = 0; j < kVecs; ++j) {
            theta[j] = dth[j] * f2[j] + l2w.w0[H] * dzf[j] + l2w.w1[H] * dzi[j];
            grad[j] = -dth[j] * i2[j];
            fp[j] = l2w.w0[H + 1] * dzf[j];
            ip[j] = l2w.w1[H + 1] * dzi[j];
          }
          for (int r = 0; r < H; ++r) {
            Vec *hnr = hn.row(r), *dhr = dht.row(r);
            dw2_f[r] += RowDot(hnr, dzf);
            dw2_i[r] += RowDot(hnr, dzi);
            for (int j = 0; j < kVecs; ++j) {
              dhr[j] += l2w.w0[r] * dzf[j] + l2w.w1[r] * dzi[j];
            }
          }
        }
        // Layer 1 backward.
        for (int r = 0; r < H; ++r) {
          Vec *i = a.row(r), *f = a.row(H + r), *g = a.row(2 * H + r),
              *o = a.row(3 * H + r);
          Vec *dzi1 = dz.row(r), *dzf1 = dz.row(H + r),
              *dzg = dz.row(2 * H + r), *dzo = dz.row(3 * H + r),
              *dcr = dct.row(r), *dhr = dht.row(r), *cpr = cp.row(r),
              *tcr = tc.row(r);
          for (int j = 0; j < kVecs; ++j) {
            const Vec dcell = dcr[j] + dhr[j] * o[j] * (one - tcr[j] * tcr[j]);
            dzi1[j] = dcell * g[j] * i[j] * (one - i[j]);
            dzf1[j] = dcell * cpr[j] * f[j] * (one - f[j]);
            dzg[j] = dcell * i[j] * (one - g[j] * g[j]);
            dzo[j] = dhr[j] * tcr[j] * o[j] * (one - o[j]);
            dcr[j] = dcell * f[j];  // becomes dc of the previous state
          }
        }
        Products(xh, dz, w, F, G, dw, &dxh);
        for (int g = 0; g < G; ++g) {
          const Vec* dzr = dz.row(g);
          Vec sum = dbias[g];
          for (int j = 0; j < kVecs; ++j) sum += dzr[j];
          dbias[g] = sum;
        }
        dxh.Store(dxo, d.p, p0, n, 0, NI);
        dxh.Store(dho, d.p, p0, n, NI, H);
        dct.Store(dco, d.p, p0, n);
        for (int k = 0; k < 4; ++k) l2.Store(vec_out[k], d.p, p0, n, k, 1);
      }
      float* out = &partials[blk * partial_size];
      for (int64_t e = 0; e < partial_size; ++e) {
        float sum = 0.f;
        for (int l = 0; l < kLanes; ++l) sum += lanes[e][l];
        out[e] = sum;
      }
    });
    const std::vector<float> total =
        SumPartials(partials, in.blocks, partial_size);
    std::copy_n(total.begin(), int64_t{NI} * G, dwx->flat<float>().data());
    std::copy_n(total.begin() + int64_t{NI} * G, int64_t{H} * G,
                dwh->flat<float>().data());
    std::copy_n(total.begin() + int64_t{F} * G, G, db->flat<float>().data());
    std::copy_n(total.begin() + l1_size, 2 * (H + 2),
                dw2->flat<float>().data());
    std::copy_n(total.begin() + l1_size + 2 * (H + 2), 2,
                db2->flat<float>().data());
  }
};

// log of a vector of positive, finite, normal floats (Cephes' logf: the
// exponent, and a degree-8 polynomial of the mantissa in [sqrt(1/2),
// sqrt(2)); |relative error| < 2e-7).
inline Vec LogPositive(Vec x) {
  VecI bits;
  std::memcpy(&bits, &x, sizeof(bits));
  VecI e = ((bits >> 23) & 0xff) - 126;  // x = m 2^e, m in [1/2, 1)
  bits = (bits & 0x007fffff) | 0x3f000000;
  Vec m;
  std::memcpy(&m, &bits, sizeof(m));
  const VecI small = m < Splat(0.707106781186547524f);  // -1 where true
  e = e + small;
  m = m - Splat(1.f) + (small ? m : Splat(0.f));  // in [sqrt(1/2) - 1, ...)
  const Vec ef = __builtin_convertvector(e, Vec);
  const Vec z = m * m;
  Vec y = Splat(7.0376836292e-2f);
  y = y * m - Splat(1.1514610310e-1f);
  y = y * m + Splat(1.1676998740e-1f);
  y = y * m - Splat(1.2420140846e-1f);
  y = y * m + Splat(1.4249322787e-1f);
  y = y * m - Splat(1.6668057665e-1f);
  y = y * m + Splat(2.0000714765e-1f);
  y = y * m - Splat(2.4999993993e-1f);
  y = y * m + Splat(3.3333331174e-1f);
  y = y * m * z;
  y = y - ef * Splat(2.12194440e-4f) - Splat(0.5f) * z;
  return m + y + ef * Splat(0.693359375f);
}

// The gradient preprocessing of Andrychowicz et al. (2016) for every element
// of x, stacked feature-major: out[0] = log(|x|) / p where |x| >= e^-p, else
// -1; out[1] = clip(e^p x, -1, 1) (sgn x where |x| >= e^-p). The same
// function as metalstm_tf/preprocess.py's log_and_sign(x, p, axis=0), as one
// op instead of about ten (its gradient is registered in Python). Like those
// ops: out[0] is +inf for an infinite x and -1 for NaN, out[1] NaN for NaN.
class LogAndSignOp : public OpKernel {
 public:
  explicit LogAndSignOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("p", &p_));
    OP_REQUIRES(ctx, p_ > 0.f && p_ <= 80.f,
                InvalidArgument("p must be in (0, 80], got ", p_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    TensorShape shape = x.shape();
    shape.InsertDim(0, 2);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape, &out));
    const int64_t n = x.NumElements();
    const float* in = x.flat<float>().data();
    float* first = out->flat<float>().data();
    float* second = first + n;
    // Rounded from double, as TensorFlow rounds the Python floats e^-p, e^p.
    const float threshold = static_cast<float>(std::exp(-double{p_})),
                scale = static_cast<float>(std::exp(double{p_}));
    const Vec inv_p = Splat(1.f / p_), t = Splat(threshold),
              inf = Splat(std::numeric_limits<float>::infinity());
    // The tail goes through a zero-padded vector, so that every element runs
    // the same code; full vectors are copied with a constant size (inlined).
    for (int64_t k = 0; k < n; k += kLanes) {
      const bool full = k + kLanes <= n;
      const size_t bytes = full ? sizeof(Vec) : (n - k) * sizeof(float);
      Vec v = Splat(0.f);
      if (full) {
        std::memcpy(&v, in + k, sizeof(Vec));
      } else {
        std::memcpy(&v, in + k, bytes);
      }
      const Vec ax = v < Splat(0.f) ? -v : v;
      const VecI finite = ax < inf;  // false for inf and NaN
      const Vec lg = LogPositive(ax > t ? ax : t) * inv_p;
      const Vec f = ax >= t ? (finite ? lg : ax) : Splat(-1.f);
      Vec s = v * Splat(scale);
      s = s > Splat(1.f) ? Splat(1.f) : s;
      s = s < Splat(-1.f) ? Splat(-1.f) : s;  // NaN stays NaN
      if (full) {
        std::memcpy(first + k, &f, sizeof(Vec));
        std::memcpy(second + k, &s, sizeof(Vec));
      } else {
        std::memcpy(first + k, &f, bytes);
        std::memcpy(second + k, &s, bytes);
      }
    }
  }

 private:
  float p_;
};

using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

REGISTER_OP("MetaLstmStep")
    .Input("x: float")
    .Input("h: float")
    .Input("c: float")
    .Input("wx: float")
    .Input("wh: float")
    .Input("b: float")
    .Input("theta: float")
    .Input("grad: float")
    .Input("f_prev: float")
    .Input("i_prev: float")
    .Input("w2: float")
    .Input("b2: float")
    .Output("h_out: float")
    .Output("c_out: float")
    .Output("theta_out: float")
    .Output("f: float")
    .Output("i: float")
    .SetShapeFn([](InferenceContext* ic) {
      ic->set_output(0, ic->input(1));
      ic->set_output(1, ic->input(1));
      for (int k = 2; k < 5; ++k) ic->set_output(k, ic->input(6));
      return absl::OkStatus();
    })
    .Doc("One step of the meta-learner's two layers (fused, CPU).");

REGISTER_OP("MetaLstmStepGrad")
    .Input("x: float")
    .Input("h: float")
    .Input("c: float")
    .Input("wx: float")
    .Input("wh: float")
    .Input("b: float")
    .Input("theta: float")
    .Input("grad: float")
    .Input("f_prev: float")
    .Input("i_prev: float")
    .Input("w2: float")
    .Input("b2: float")
    .Input("dh_out: float")
    .Input("dc_out: float")
    .Input("dtheta_out: float")
    .Input("df: float")
    .Input("di: float")
    .Output("dx: float")
    .Output("dh: float")
    .Output("dc: float")
    .Output("dwx: float")
    .Output("dwh: float")
    .Output("db: float")
    .Output("dtheta: float")
    .Output("dgrad: float")
    .Output("df_prev: float")
    .Output("di_prev: float")
    .Output("dw2: float")
    .Output("db2: float")
    .SetShapeFn([](InferenceContext* ic) {
      for (int i = 0; i < 12; ++i) ic->set_output(i, ic->input(i));
      return absl::OkStatus();
    })
    .Doc("Gradient of MetaLstmStep.");

REGISTER_OP("LogAndSign")
    .Input("x: float")
    .Output("y: float")
    .Attr("p: float = 10.0")
    .SetShapeFn([](InferenceContext* ic) {
      ShapeHandle out;
      TF_RETURN_IF_ERROR(
          ic->Concatenate(ic->Vector(2), ic->input(0), &out));
      ic->set_output(0, out);
      return absl::OkStatus();
    })
    .Doc("Log/sign gradient preprocessing, stacked on a new first axis.");

REGISTER_KERNEL_BUILDER(Name("LogAndSign").Device(::tensorflow::DEVICE_CPU),
                        LogAndSignOp);
REGISTER_KERNEL_BUILDER(Name("MetaLstmStep").Device(::tensorflow::DEVICE_CPU),
                        MetaLstmStepOp);
REGISTER_KERNEL_BUILDER(
    Name("MetaLstmStepGrad").Device(::tensorflow::DEVICE_CPU),
    MetaLstmStepGradOp);

}  // namespace
}  // namespace metalstm
