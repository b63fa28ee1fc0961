// Fused CPU kernels for the meta-learner's two coordinate-wise layers: the
// LSTM of layer 1 (MetaLstmCell) and the meta cell of layer 2 (MetaGateCell,
// below), each with its gradient op.
//
// The layer-1 LSTM runs over every learner coordinate (about 30,000 of them)
// with 20 hidden units: per step, TensorFlow's ops write the [80, P] gate
// pre-activations and a dozen [20, P] intermediates to memory and read them
// back, forward and backward, and that memory traffic dominates the
// meta-learner's time on a CPU. These kernels compute one step for a chunk of
// 64 (AVX2) or 128 (AVX-512) coordinates at a time with everything in
// registers and L1: the gate products, the activations and the cell update
// (forward), and the gate gradients, the input/recurrent gradients and the
// weight gradients (backward).
//
// Layout (feature-major, like metalstm_tf/update_rules/meta_lstm.py):
//   x [n_in, P]  per-coordinate inputs      h, c [H, P]  state
//   wx [n_in, 4H], wh [H, 4H], b [4H]       gate order i, f, g, o
//   z = wx^T x + wh^T h + b;  i, f, o = sigmoid(z_i, z_f, z_o); g = tanh(z_g)
//   c' = f c + i g;  h' = o tanh(c')
// The backward kernel recomputes the gates from x, h and c: on a CPU that is
// cheaper than writing the [4H, P] activations to memory and reading them back.
//
// Results are deterministic: the work is split into fixed blocks of
// coordinates, each block's weight-gradient partial sum is kept apart, and
// the partials are added in block order.

#include <algorithm>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
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
static_assert(kVecs == 8, "the dW reduction below is written for 8 vectors");

inline Vec Splat(float v) { return Vec{} + v; }

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
// division, which dominated the activations' time.
inline Vec Reciprocal(Vec d) {
#if defined(__AVX512F__)
  const Vec r =
      reinterpret_cast<Vec>(_mm512_rcp14_ps(reinterpret_cast<__m512>(d)));
  return r * (Splat(2.f) - d * r);
#else
  return Splat(1.f) / d;
#endif
}

inline Vec Sigmoid(Vec x) { return Reciprocal(Splat(1.f) + Exp(-x)); }
inline Vec Tanh(Vec x) { return Splat(2.f) * Sigmoid(x + x) - Splat(1.f); }

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
      std::memcpy(dst, src + r * stride + p0, n * sizeof(float));
      if (n < kChunk) std::memset(dst + n, 0, (kChunk - n) * sizeof(float));
    }
  }
  void Store(float* dst, int64_t stride, int64_t p0, int n, int row0 = 0,
             int count = -1) {
    if (count < 0) count = rows - row0;
    for (int r = 0; r < count; ++r) {
      std::memcpy(dst + r * stride + p0,
                  reinterpret_cast<const float*>(row(row0 + r)),
                  n * sizeof(float));
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

// Runs fn(block) for blocks [0, n) on the op's thread pool (`cost`: per
// block).
template <typename Fn>
void ParallelBlocks(OpKernelContext* ctx, int64_t n, int64_t cost, Fn fn) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  pool->ParallelFor(n, cost, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) fn(blk);
  });
}

// The sums of `blocks` lane-wise partial sums of `size` entries each, added
// in block and lane order (deterministic).
std::vector<float> SumPartials(const std::vector<Vec>& partials,
                               int64_t blocks, int64_t size) {
  std::vector<float> total(size, 0.f);
  for (int64_t blk = 0; blk < blocks; ++blk) {
    for (int64_t e = 0; e < size; ++e) {
      const Vec v = partials[blk * size + e];
      for (int l = 0; l < kLanes; ++l) total[e] += v[l];
    }
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

// z <- activations i, f, g, o of the gate pre-activations W^T [x; h] + b for
// one chunk (`w` is [features, gates]). Not inlined: GCC allocates the
// register blocks best in a function of their own (measured).
__attribute__((noinline)) void Gates(Tile& xh, const float* w, const float* b,
                                     int F, int H, Tile* z) {
  const int G = 4 * H;
  for (int g = 0; g < G; ++g) {
    Vec acc[kVecs];
    for (int j = 0; j < kVecs; ++j) acc[j] = Splat(b[g]);
    for (int k = 0; k < F; ++k) {
      const Vec wk = Splat(w[k * G + g]);
      const Vec* xr = xh.row(k);
      for (int j = 0; j < kVecs; ++j) acc[j] += wk * xr[j];
    }
    Vec* zr = z->row(g);
    const bool is_tanh = g >= 2 * H && g < 3 * H;
    for (int j = 0; j < kVecs; ++j)
      zr[j] = is_tanh ? Tanh(acc[j]) : Sigmoid(acc[j]);
  }
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
      const Vec* dzr = dz.row(g);
      const Vec s0 = xr[0] * dzr[0] + xr[1] * dzr[1];
      const Vec s1 = xr[2] * dzr[2] + xr[3] * dzr[3];
      const Vec s2 = xr[4] * dzr[4] + xr[5] * dzr[5];
      const Vec s3 = xr[6] * dzr[6] + xr[7] * dzr[7];
      dwk[g] += (s0 + s1) + (s2 + s3);
    }
  }
}

// What both kernels read: the inputs x, h, c, wx, wh, b of the forward op.
struct CellInputs {
  // Fails `ctx` on bad shapes (check its status before use).
  explicit CellInputs(OpKernelContext* ctx) : ctx(ctx) {
    CheckInputs(ctx, &d);
    if (!ctx->status().ok()) return;
    w = StackWeights(ctx->input(3), ctx->input(4));
    b = ctx->input(5).flat<float>().data();
    x = ctx->input(0).flat<float>().data();
    h = ctx->input(1).flat<float>().data();
    c = ctx->input(2).flat<float>().data();
    chunks = (d.p + kChunk - 1) / kChunk;
    blocks = (chunks + kChunksPerBlock - 1) / kChunksPerBlock;
  }

  // Runs fn(block, first_chunk, end_chunk) for the fixed blocks of chunks,
  // in parallel on the op's thread pool (`cost`: per coordinate).
  template <typename Fn>
  void ForEachBlock(int64_t cost, Fn fn) const {
    ParallelBlocks(ctx, blocks, cost * kChunk * kChunksPerBlock,
                   [&](int64_t blk) {
      fn(blk, blk * kChunksPerBlock,
         std::min(chunks, (blk + 1) * kChunksPerBlock));
    });
  }

  // Valid coordinates of chunk `ch` (starting at ch * kChunk).
  int Valid(int64_t ch) const {
    return static_cast<int>(std::min<int64_t>(kChunk, d.p - ch * kChunk));
  }

  // Loads [x; h] and c of a chunk, and computes its gate activations.
  void LoadAndGates(int64_t p0, int n, Tile* xh, Tile* cs, Tile* z) const {
    xh->Load(x, d.p, p0, n, 0, d.n_in);
    xh->Load(h, d.p, p0, n, d.n_in, d.hidden);
    cs->Load(c, d.p, p0, n);
    Gates(*xh, w.data(), b, d.features, d.hidden, z);
  }

  OpKernelContext* ctx;
  Dims d;
  std::vector<float> w;
  const float *b = nullptr, *x = nullptr, *h = nullptr, *c = nullptr;
  int64_t chunks = 0, blocks = 0;
};

class MetaLstmCellOp : public OpKernel {
 public:
  explicit MetaLstmCellOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const CellInputs in(ctx);
    if (!ctx->status().ok()) return;
    const int H = in.d.hidden, G = in.d.gates, F = in.d.features;
    const int64_t P = in.d.p;
    Tensor *h_out, *c_out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({H, P}), &h_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({H, P}), &c_out));
    float* ho = h_out->flat<float>().data();
    float* co = c_out->flat<float>().data();
    in.ForEachBlock(2 * F * G + 40 * G, [&](int64_t, int64_t ch0,
                                             int64_t ch1) {
      Tile xh(F), cs(H), z(G);
      for (int64_t ch = ch0; ch < ch1; ++ch) {
        const int64_t p0 = ch * kChunk;
        const int n = in.Valid(ch);
        in.LoadAndGates(p0, n, &xh, &cs, &z);
        for (int r = 0; r < H; ++r) {
          Vec *i = z.row(r), *f = z.row(H + r), *gg = z.row(2 * H + r),
             *o = z.row(3 * H + r), *cr = cs.row(r),
             *hr = xh.row(in.d.n_in + r);
          for (int j = 0; j < kVecs; ++j) {
            cr[j] = f[j] * cr[j] + i[j] * gg[j];
            hr[j] = o[j] * Tanh(cr[j]);
          }
        }
        cs.Store(co, P, p0, n);
        xh.Store(ho, P, p0, n, in.d.n_in, H);
      }
    });
  }
};

class MetaLstmCellGradOp : public OpKernel {
 public:
  explicit MetaLstmCellGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const CellInputs in(ctx);
    if (!ctx->status().ok()) return;
    const Dims& d = in.d;
    const int H = d.hidden, G = d.gates, F = d.features, NI = d.n_in;
    for (int i = 6; i < 8; ++i) {
      OP_REQUIRES(ctx, ctx->input(i).shape() == TensorShape({H, d.p}),
                  InvalidArgument("dh_out and dc_out must be [hidden, P]"));
    }
    Tensor *dx, *dh, *dc, *dwx, *dwh, *db;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({NI, d.p}), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({H, d.p}), &dh));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({H, d.p}), &dc));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({NI, G}), &dwx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({H, G}), &dwh));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(5, TensorShape({G}), &db));
    const float* dh_out = ctx->input(6).flat<float>().data();
    const float* dc_out = ctx->input(7).flat<float>().data();
    float* dxo = dx->flat<float>().data();
    float* dho = dh->flat<float>().data();
    float* dco = dc->flat<float>().data();
    const float* w = in.w.data();
    // Per block, lane-wise partial sums: the weight gradient [F, G], then the
    // bias gradient [G]; added across lanes and blocks in a fixed order.
    const int64_t partial_size = int64_t{F} * G + G;
    std::vector<Vec> partials(in.blocks * partial_size, Splat(0.f));
    in.ForEachBlock(5 * F * G + 60 * G, [&](int64_t blk, int64_t ch0,
                                             int64_t ch1) {
      Tile a(G), xh(F), cp(H), dht(H), dct(H), dz(G), dxh(F);
      Vec* dw = &partials[blk * partial_size];
      Vec* dbias = dw + int64_t{F} * G;
      for (int64_t ch = ch0; ch < ch1; ++ch) {
        const int64_t p0 = ch * kChunk;
        const int n = in.Valid(ch);
        in.LoadAndGates(p0, n, &xh, &cp, &a);  // recomputed, not stored
        dht.Load(dh_out, d.p, p0, n);
        dct.Load(dc_out, d.p, p0, n);
        const Vec one = Splat(1.f);
        for (int r = 0; r < H; ++r) {
          Vec *i = a.row(r), *f = a.row(H + r), *g = a.row(2 * H + r),
             *o = a.row(3 * H + r);
          Vec *dzi = dz.row(r), *dzf = dz.row(H + r), *dzg = dz.row(2 * H + r),
             *dzo = dz.row(3 * H + r), *dcr = dct.row(r), *dhr = dht.row(r),
             *cpr = cp.row(r);
          for (int j = 0; j < kVecs; ++j) {
            const Vec tc = Tanh(f[j] * cpr[j] + i[j] * g[j]);
            const Vec dcell = dcr[j] + dhr[j] * o[j] * (one - tc * tc);
            dzi[j] = dcell * g[j] * i[j] * (one - i[j]);
            dzf[j] = dcell * cpr[j] * f[j] * (one - f[j]);
            dzg[j] = dcell * i[j] * (one - g[j] * g[j]);
            dzo[j] = dhr[j] * tc * o[j] * (one - o[j]);
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
      }
    });
    const std::vector<float> total =
        SumPartials(partials, in.blocks, partial_size);
    std::copy_n(total.begin(), int64_t{NI} * G, dwx->flat<float>().data());
    std::copy_n(total.begin() + int64_t{NI} * G, int64_t{H} * G,
                dwh->flat<float>().data());
    std::copy_n(total.begin() + int64_t{F} * G, G, db->flat<float>().data());
  }
};

// Layer 2, the meta cell whose cell state is the learner's parameters:
//   z_f = w[0] . [h; theta; f_prev] + b[0],  f = sigmoid(z_f)
//   z_i = w[1] . [h; theta; i_prev] + b[1],  i = sigmoid(z_i)
//   theta' = f theta - i grad
// h [H, P]; theta, grad, f_prev, i_prev [P]; w [2, H + 2]; b [2]. The
// coordinates are split into blocks of kBlock; the weight gradient's
// partial sums are kept per block and lane and added in a fixed order.
constexpr int kBlock = 1024;
constexpr int kBlockVecs = kBlock / kLanes;

// `n` floats of src into vectors dst[0, kBlockVecs), zero-padded.
inline void LoadBlock(const float* src, int n, Vec* dst) {
  std::memcpy(dst, src, n * sizeof(float));
  std::memset(reinterpret_cast<float*>(dst) + n, 0,
              (kBlock - n) * sizeof(float));
}

struct GateCellInputs {
  // Fails `ctx` on bad shapes (check its status before use).
  explicit GateCellInputs(OpKernelContext* ctx) : ctx(ctx) {
    const Tensor& h = ctx->input(0);
    OP_REQUIRES(ctx, h.dims() == 2,
                InvalidArgument("h must be a [hidden, P] matrix"));
    hidden = static_cast<int>(h.dim_size(0));
    p = h.dim_size(1);
    for (int k = 1; k < 5; ++k) {
      OP_REQUIRES(ctx, ctx->input(k).shape() == TensorShape({p}),
                  InvalidArgument("theta, grad, f_prev and i_prev must be "
                                  "[P] vectors, P = h's second dimension"));
    }
    OP_REQUIRES(ctx, ctx->input(5).shape() == TensorShape({2, hidden + 2}),
                InvalidArgument("w must be [2, hidden + 2]"));
    OP_REQUIRES(ctx, ctx->input(6).shape() == TensorShape({2}),
                InvalidArgument("b must be [2]"));
    for (int k = 0; k < 7; ++k) in[k] = ctx->input(k).flat<float>().data();
    blocks = (p + kBlock - 1) / kBlock;
  }

  int Valid(int64_t blk) const {
    return static_cast<int>(std::min<int64_t>(kBlock, p - blk * kBlock));
  }

  // Loads the per-coordinate inputs of block `blk` into theta, grad, fp, ip
  // and computes the gates f, i.
  void Gates(int64_t blk, Vec* theta, Vec* grad, Vec* fp, Vec* ip, Vec* f,
             Vec* i) const {
    const int64_t p0 = blk * kBlock;
    const int n = Valid(blk);
    LoadBlock(in[1] + p0, n, theta);
    LoadBlock(in[2] + p0, n, grad);
    LoadBlock(in[3] + p0, n, fp);
    LoadBlock(in[4] + p0, n, ip);
    const float *w0 = in[5], *w1 = in[5] + hidden + 2, *b = in[6];
    for (int j = 0; j < kBlockVecs; ++j) {
      f[j] = Splat(b[0]) + w0[hidden] * theta[j] + w0[hidden + 1] * fp[j];
      i[j] = Splat(b[1]) + w1[hidden] * theta[j] + w1[hidden + 1] * ip[j];
    }
    Vec hk[kBlockVecs];
    for (int k = 0; k < hidden; ++k) {
      LoadBlock(in[0] + k * p + p0, n, hk);
      for (int j = 0; j < kBlockVecs; ++j) {
        f[j] += w0[k] * hk[j];
        i[j] += w1[k] * hk[j];
      }
    }
    for (int j = 0; j < kBlockVecs; ++j) {
      f[j] = Sigmoid(f[j]);
      i[j] = Sigmoid(i[j]);
    }
  }

  OpKernelContext* ctx;
  int hidden = 0;
  int64_t p = 0, blocks = 0;
  const float* in[7] = {};  // h, theta, grad, f_prev, i_prev, w, b
};

class MetaGateCellOp : public OpKernel {
 public:
  explicit MetaGateCellOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const GateCellInputs in(ctx);
    if (!ctx->status().ok()) return;
    float* out[3];
    for (int k = 0; k < 3; ++k) {
      Tensor* t;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(k, TensorShape({in.p}), &t));
      out[k] = t->flat<float>().data();
    }
    ParallelBlocks(ctx, in.blocks, int64_t{kBlock} * (4 * in.hidden + 100),
                   [&](int64_t blk) {
      Vec theta[kBlockVecs], grad[kBlockVecs], fp[kBlockVecs], ip[kBlockVecs],
          f[kBlockVecs], i[kBlockVecs];
      in.Gates(blk, theta, grad, fp, ip, f, i);
      for (int j = 0; j < kBlockVecs; ++j) {
        theta[j] = f[j] * theta[j] - i[j] * grad[j];
      }
      const int64_t p0 = blk * kBlock;
      const int n = in.Valid(blk);
      std::memcpy(out[0] + p0, theta, n * sizeof(float));
      std::memcpy(out[1] + p0, f, n * sizeof(float));
      std::memcpy(out[2] + p0, i, n * sizeof(float));
    });
  }
};

class MetaGateCellGradOp : public OpKernel {
 public:
  explicit MetaGateCellGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const GateCellInputs in(ctx);
    if (!ctx->status().ok()) return;
    const int H = in.hidden;
    const int64_t P = in.p;
    for (int k = 7; k < 10; ++k) {
      OP_REQUIRES(ctx, ctx->input(k).shape() == TensorShape({P}),
                  InvalidArgument("d_theta_out, d_f and d_i must be [P]"));
    }
    const float* d_in[3];
    for (int k = 0; k < 3; ++k) {
      d_in[k] = ctx->input(7 + k).flat<float>().data();
    }
    Tensor *dh, *dw, *db;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({H, P}), &dh));
    float* dp[4];  // d theta, d grad, d f_prev, d i_prev
    for (int k = 0; k < 4; ++k) {
      Tensor* t;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(1 + k, TensorShape({P}), &t));
      dp[k] = t->flat<float>().data();
    }
    OP_REQUIRES_OK(ctx, ctx->allocate_output(5, TensorShape({2, H + 2}), &dw));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(6, TensorShape({2}), &db));
    const float *w0 = in.in[5], *w1 = in.in[5] + H + 2;
    float* dho = dh->flat<float>().data();
    // Per block: lane-wise partial sums of dw (2 x (H + 2)), then db (2).
    const int64_t partial_size = 2 * (H + 2) + 2;
    std::vector<Vec> partials(in.blocks * partial_size, Splat(0.f));
    ParallelBlocks(ctx, in.blocks, int64_t{kBlock} * (8 * H + 150),
                   [&](int64_t blk) {
      Vec theta[kBlockVecs], grad[kBlockVecs], fp[kBlockVecs], ip[kBlockVecs],
          f[kBlockVecs], i[kBlockVecs], dzf[kBlockVecs], dzi[kBlockVecs],
          buf[kBlockVecs];
      in.Gates(blk, theta, grad, fp, ip, f, i);
      const int64_t p0 = blk * kBlock;
      const int n = in.Valid(blk);
      Vec* part = &partials[blk * partial_size];
      Vec *dw0 = part, *dw1 = part + H + 2, *db_ = part + 2 * (H + 2);
      // d theta' (buf), then the gates' pre-activation gradients.
      LoadBlock(d_in[0] + p0, n, buf);
      Vec df[kBlockVecs], di[kBlockVecs];
      LoadBlock(d_in[1] + p0, n, df);
      LoadBlock(d_in[2] + p0, n, di);
      const Vec one = Splat(1.f);
      for (int j = 0; j < kBlockVecs; ++j) {
        dzf[j] = (df[j] + buf[j] * theta[j]) * f[j] * (one - f[j]);
        dzi[j] = (di[j] - buf[j] * grad[j]) * i[j] * (one - i[j]);
        dw0[H] += theta[j] * dzf[j];
        dw0[H + 1] += fp[j] * dzf[j];
        dw1[H] += theta[j] * dzi[j];
        dw1[H + 1] += ip[j] * dzi[j];
        db_[0] += dzf[j];
        db_[1] += dzi[j];
        // Outputs in place: d theta, d grad, d f_prev, d i_prev.
        theta[j] = buf[j] * f[j] + w0[H] * dzf[j] + w1[H] * dzi[j];
        grad[j] = -buf[j] * i[j];
        fp[j] = w0[H + 1] * dzf[j];
        ip[j] = w1[H + 1] * dzi[j];
      }
      std::memcpy(dp[0] + p0, theta, n * sizeof(float));
      std::memcpy(dp[1] + p0, grad, n * sizeof(float));
      std::memcpy(dp[2] + p0, fp, n * sizeof(float));
      std::memcpy(dp[3] + p0, ip, n * sizeof(float));
      for (int k = 0; k < H; ++k) {
        LoadBlock(in.in[0] + k * P + p0, n, buf);  // h[k]
        Vec s0 = Splat(0.f), s1 = Splat(0.f);
        for (int j = 0; j < kBlockVecs; ++j) {
          s0 += buf[j] * dzf[j];
          s1 += buf[j] * dzi[j];
          buf[j] = w0[k] * dzf[j] + w1[k] * dzi[j];
        }
        dw0[k] += s0;
        dw1[k] += s1;
        std::memcpy(dho + k * P + p0, buf, n * sizeof(float));
      }
    });
    const std::vector<float> total =
        SumPartials(partials, in.blocks, partial_size);
    std::copy_n(total.begin(), 2 * (H + 2), dw->flat<float>().data());
    std::copy_n(total.begin() + 2 * (H + 2), 2, db->flat<float>().data());
  }
};

using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

REGISTER_OP("MetaLstmCell")
    .Input("x: float")
    .Input("h: float")
    .Input("c: float")
    .Input("wx: float")
    .Input("wh: float")
    .Input("b: float")
    .Output("h_out: float")
    .Output("c_out: float")
    .SetShapeFn([](InferenceContext* ic) {
      ic->set_output(0, ic->input(1));
      ic->set_output(1, ic->input(1));
      return absl::OkStatus();
    })
    .Doc("One step of the coordinate-wise LSTM layer (fused, CPU).");

REGISTER_OP("MetaLstmCellGrad")
    .Input("x: float")
    .Input("h: float")
    .Input("c: float")
    .Input("wx: float")
    .Input("wh: float")
    .Input("b: float")
    .Input("dh_out: float")
    .Input("dc_out: float")
    .Output("dx: float")
    .Output("dh: float")
    .Output("dc: float")
    .Output("dwx: float")
    .Output("dwh: float")
    .Output("db: float")
    .SetShapeFn([](InferenceContext* ic) {
      for (int i = 0; i < 6; ++i) ic->set_output(i, ic->input(i));
      return absl::OkStatus();
    })
    .Doc("Gradient of MetaLstmCell.");

REGISTER_OP("MetaGateCell")
    .Input("h: float")
    .Input("theta: float")
    .Input("grad: float")
    .Input("f_prev: float")
    .Input("i_prev: float")
    .Input("w: float")
    .Input("b: float")
    .Output("theta_out: float")
    .Output("f: float")
    .Output("i: float")
    .SetShapeFn([](InferenceContext* ic) {
      for (int k = 0; k < 3; ++k) ic->set_output(k, ic->input(1));
      return absl::OkStatus();
    })
    .Doc("Layer 2 of the meta-learner (gates and parameter update; CPU).");

REGISTER_OP("MetaGateCellGrad")
    .Input("h: float")
    .Input("theta: float")
    .Input("grad: float")
    .Input("f_prev: float")
    .Input("i_prev: float")
    .Input("w: float")
    .Input("b: float")
    .Input("d_theta_out: float")
    .Input("d_f: float")
    .Input("d_i: float")
    .Output("dh: float")
    .Output("dtheta: float")
    .Output("dgrad: float")
    .Output("df_prev: float")
    .Output("di_prev: float")
    .Output("dw: float")
    .Output("db: float")
    .SetShapeFn([](InferenceContext* ic) {
      for (int k = 0; k < 7; ++k) ic->set_output(k, ic->input(k));
      return absl::OkStatus();
    })
    .Doc("Gradient of MetaGateCell.");

REGISTER_KERNEL_BUILDER(Name("MetaLstmCell").Device(::tensorflow::DEVICE_CPU),
                        MetaLstmCellOp);
REGISTER_KERNEL_BUILDER(
    Name("MetaLstmCellGrad").Device(::tensorflow::DEVICE_CPU),
    MetaLstmCellGradOp);
REGISTER_KERNEL_BUILDER(Name("MetaGateCell").Device(::tensorflow::DEVICE_CPU),
                        MetaGateCellOp);
REGISTER_KERNEL_BUILDER(
    Name("MetaGateCellGrad").Device(::tensorflow::DEVICE_CPU),
    MetaGateCellGradOp);

}  // namespace
}  // namespace metalstm
