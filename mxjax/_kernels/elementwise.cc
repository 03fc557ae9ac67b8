// mxjax's multi-tensor kernel for XLA on CPU: one custom call updates many parameter
// tensors in place by running an optimizer's elementwise program over them.
//
// The program is the optimizer's traced JAX rule (mxjax/optimizer/_fused.py compiles it
// from the jaxpr): a list of IEEE-exact float32 operations on blocks of kBlock elements.
// Every operation rounds to float32 on its own (built with -ffp-contract=off), as XLA's
// reference path does, so results agree with it element for element.
//
// Operands: u (float32[U], the step's scalars), w_1..w_k (the parameters), g_1..g_k (their
// gradients), S_1..S_s (flat slot buffers shared by the whole group; leaf i occupies
// [slot_base + o_i, slot_base + o_i + n_i)). Results: w_1'..w_k', S_1'..S_s', aliased to
// the operands by the caller, so the update happens in place.
// Registers 0..1+n_slots point into the operands; RunRange stages what needs it.
//
// Program layout (int32): n_regs, n_slots, n_uniform, (reg, u_index) * n_uniform,
// (out_reg) * (1 + n_slots), n_instr, (op, dst, a, b, c) * n_instr. Registers 0, 1 and
// 2..1+n_slots are w, g and the slots (read from memory); the others are scratch.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kBlock = 256;
// Below this many elements in one call, threads cost more than they save.
#ifndef MXJAX_PARALLEL_MIN
#define MXJAX_PARALLEL_MIN (1 << 17)
#endif
constexpr int64_t kParallelMin = MXJAX_PARALLEL_MIN;
// Elements per unit of parallel work.
constexpr int64_t kChunk = 1 << 15;
// The most slot buffers a program may have.
constexpr int32_t kMaxSlots = 16;

enum Op : int32_t {
  kAdd = 0, kSub, kMul, kDiv, kNeg, kMax, kMin, kAbs, kSign, kSqrt,
  kEq, kNe, kLt, kLe, kGt, kGe, kSelect, kAnd, kOr, kNot, kCopy, kIsFinite,
  kFloor, kCeil, kNumOps
};

struct Instr {
  int32_t op, dst, a, b, c;
};

struct Program {
  int32_t n_regs = 0, n_slots = 0;
  std::vector<std::pair<int32_t, int32_t>> uniforms;  // (reg, index into u)
  std::vector<int32_t> outs;                          // w', slot' registers
  std::vector<Instr> code;
};

bool Parse(ffi::Span<const int32_t> p, Program* out) {
  size_t i = 0;
  auto next = [&](int32_t* v) {
    if (i >= p.size()) return false;
    *v = p[i++];
    return true;
  };
  int32_t n;
  if (!next(&out->n_regs) || !next(&out->n_slots) || !next(&n)) return false;
  if (out->n_regs < 2 + out->n_slots || out->n_slots < 0 || out->n_slots > kMaxSlots ||
      n < 0)
    return false;
  for (int32_t k = 0; k < n; ++k) {
    int32_t r, u;
    if (!next(&r) || !next(&u)) return false;
    out->uniforms.emplace_back(r, u);
  }
  for (int32_t k = 0; k < 1 + out->n_slots; ++k) {
    int32_t r;
    if (!next(&r)) return false;
    out->outs.push_back(r);
  }
  if (!next(&n) || n < 0) return false;
  for (int32_t k = 0; k < n; ++k) {
    Instr in;
    if (!next(&in.op) || !next(&in.dst) || !next(&in.a) || !next(&in.b) ||
        !next(&in.c))
      return false;
    if (in.op < 0 || in.op >= kNumOps) return false;
    out->code.push_back(in);
  }
  if (i != p.size()) return false;
  auto ok = [&](int32_t r) { return r >= 0 && r < out->n_regs; };
  for (auto& [r, u] : out->uniforms)
    if (!ok(r) || r < 2 + out->n_slots || u < 0) return false;
  for (int32_t r : out->outs)
    if (!ok(r)) return false;
  for (const Instr& in : out->code)
    if (!ok(in.dst) || in.dst < 2 + out->n_slots || !ok(in.a) || !ok(in.b) ||
        !ok(in.c))
      return false;
  return true;
}

inline float Max(float a, float b) { return a != a ? a : (b != b ? b : (a > b ? a : b)); }
inline float Min(float a, float b) { return a != a ? a : (b != b ? b : (a < b ? a : b)); }
inline float Sign(float a) { return a > 0.0f ? 1.0f : (a < 0.0f ? -1.0f : a); }

// Runs the program on n <= kBlock elements. regs[r] points at register r's n values.
// On x86-64 Linux, built for AVX2 and for the baseline; the loader picks what the CPU
// runs. (-ffp-contract=off keeps FMA out of both.)
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
__attribute__((target_clones("avx2", "default")))
#endif
void RunBlock(const Program& p, float** regs, int64_t n) {
  for (const Instr& in : p.code) {
    float* __restrict d = regs[in.dst];
    const float* a = regs[in.a];
    const float* b = regs[in.b];
    const float* c = regs[in.c];
#define MX_LOOP(expr) \
  for (int64_t i = 0; i < n; ++i) d[i] = (expr); \
  break;
    switch (in.op) {
      case kAdd: MX_LOOP(a[i] + b[i])
      case kSub: MX_LOOP(a[i] - b[i])
      case kMul: MX_LOOP(a[i] * b[i])
      case kDiv: MX_LOOP(a[i] / b[i])
      case kNeg: MX_LOOP(-a[i])
      case kMax: MX_LOOP(Max(a[i], b[i]))
      case kMin: MX_LOOP(Min(a[i], b[i]))
      case kAbs: MX_LOOP(std::fabs(a[i]))
      case kSign: MX_LOOP(Sign(a[i]))
      case kSqrt: MX_LOOP(std::sqrt(a[i]))
      case kEq: MX_LOOP(a[i] == b[i] ? 1.0f : 0.0f)
      case kNe: MX_LOOP(a[i] != b[i] ? 1.0f : 0.0f)
      case kLt: MX_LOOP(a[i] < b[i] ? 1.0f : 0.0f)
      case kLe: MX_LOOP(a[i] <= b[i] ? 1.0f : 0.0f)
      case kGt: MX_LOOP(a[i] > b[i] ? 1.0f : 0.0f)
      case kGe: MX_LOOP(a[i] >= b[i] ? 1.0f : 0.0f)
      case kSelect: MX_LOOP(a[i] != 0.0f ? c[i] : b[i])  // select_n(a, b, c)
      case kAnd: MX_LOOP((a[i] != 0.0f && b[i] != 0.0f) ? 1.0f : 0.0f)
      case kOr: MX_LOOP((a[i] != 0.0f || b[i] != 0.0f) ? 1.0f : 0.0f)
      case kNot: MX_LOOP(a[i] != 0.0f ? 0.0f : 1.0f)
      case kCopy: MX_LOOP(a[i])
      case kIsFinite: MX_LOOP(std::isfinite(a[i]) ? 1.0f : 0.0f)
      case kFloor: MX_LOOP(std::floor(a[i]))
      case kCeil: MX_LOOP(std::ceil(a[i]))
      default: break;
    }
#undef MX_LOOP
  }
}

struct Call {
  const Program* prog;
  const float* u;
  std::vector<const float*> w, g;
  std::vector<float*> w_out;
  std::vector<const float*> s;
  std::vector<float*> s_out;
  std::vector<int64_t> start;  // prefix sums of the leaves' sizes (k + 1 entries)
  int64_t slot_base;
};

// Updates the elements [lo, hi) of the concatenated leaves.
void RunRange(const Call& c, int64_t lo, int64_t hi) {
  const Program& p = *c.prog;
  const int32_t S = p.n_slots, fixed = 2 + S;
  // Scratch registers, then one staging block per output (see below).
  std::vector<float> scratch(static_cast<size_t>(p.n_regs + 1 + S) * kBlock);
  std::vector<float*> regs(p.n_regs);
  for (int32_t r = fixed; r < p.n_regs; ++r) regs[r] = scratch.data() + r * kBlock;
  float* stage = scratch.data() + static_cast<size_t>(p.n_regs) * kBlock;
  for (auto& [r, k] : p.uniforms) std::fill_n(regs[r], kBlock, c.u[k]);
  size_t leaf = std::upper_bound(c.start.begin(), c.start.end(), lo) - c.start.begin() - 1;
  for (int64_t pos = lo; pos < hi;) {
    while (c.start[leaf + 1] <= pos) ++leaf;
    const int64_t j = pos - c.start[leaf];  // element index inside the leaf
    const int64_t n = std::min({kBlock, hi - pos, c.start[leaf + 1] - pos});
    const int64_t so = c.slot_base + pos;  // index in the flat slot buffers
    // Inputs are read where they lie; outputs are written after the whole block is
    // computed, so writing them in place cannot disturb a read.
    regs[0] = const_cast<float*>(c.w[leaf] + j);
    regs[1] = const_cast<float*>(c.g[leaf] + j);
    for (int32_t k = 0; k < S; ++k) regs[2 + k] = const_cast<float*>(c.s[k] + so);
    RunBlock(p, regs.data(), n);
    // An output that is another input's unchanged value (DCASGD keeps the old weight)
    // is staged first: that input's memory may be the destination of another output.
    float* dst[1 + kMaxSlots];
    const float* src[1 + kMaxSlots];
    dst[0] = c.w_out[leaf] + j;
    for (int32_t k = 0; k < S; ++k) dst[1 + k] = c.s_out[k] + so;
    for (int32_t o = 0; o <= S; ++o) {
      const int32_t r = p.outs[o];
      src[o] = regs[r];
      if (r < fixed && r != 1 && r != (o == 0 ? 0 : 1 + o)) {
        std::memcpy(stage + o * kBlock, regs[r], n * sizeof(float));
        src[o] = stage + o * kBlock;
      }
    }
    for (int32_t o = 0; o <= S; ++o)
      if (src[o] != dst[o]) std::memcpy(dst[o], src[o], n * sizeof(float));
    pos += n;
  }
}

struct Shared {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

void Work(const Call& c, Shared& sh, int64_t total, int64_t chunks) {
  for (int64_t k; (k = sh.next.fetch_add(1)) < chunks;) {
    RunRange(c, k * kChunk, std::min(total, (k + 1) * kChunk));
    sh.done.fetch_add(1, std::memory_order_release);
  }
}

ffi::Error Update(ffi::ThreadPool pool, ffi::Span<const int32_t> program,
                  int64_t n_leaves, int64_t slot_base, ffi::RemainingArgs args,
                  ffi::RemainingRets rets) {
  Program p;
  if (!Parse(program, &p)) return ffi::Error::InvalidArgument("mxjax: malformed program");
  const int64_t k = n_leaves, S = p.n_slots;
  if (k < 1 || static_cast<int64_t>(args.size()) != 1 + 2 * k + S ||
      static_cast<int64_t>(rets.size()) != k + S)
    return ffi::Error::InvalidArgument("mxjax: operand count does not match the program");
  auto arg = [&](size_t i) { return args.get<ffi::AnyBuffer>(i); };
  auto ret = [&](size_t i) { return rets.get<ffi::AnyBuffer>(i); };
  Call c;
  c.prog = &p;
  auto u = arg(0);
  if (u.has_error() || u->element_type() != ffi::DataType::F32)
    return ffi::Error::InvalidArgument("mxjax: u must be float32");
  for (auto& [r, idx] : p.uniforms)
    if (idx >= static_cast<int64_t>(u->element_count()))
      return ffi::Error::InvalidArgument("mxjax: uniform index out of range");
  c.u = u->typed_data<float>();
  c.start.push_back(0);
  for (int64_t i = 0; i < k; ++i) {
    auto w = arg(1 + i), g = arg(1 + k + i);
    auto wo = ret(i);
    if (w.has_error() || g.has_error() || wo.has_error())
      return ffi::Error::InvalidArgument("mxjax: bad operand");
    if (w->element_type() != ffi::DataType::F32 || g->element_type() != ffi::DataType::F32 ||
        (*wo)->element_type() != ffi::DataType::F32 ||
        g->element_count() != w->element_count() ||
        (*wo)->element_count() != w->element_count())
      return ffi::Error::InvalidArgument("mxjax: parameters must be float32, like their grads");
    c.w.push_back(w->typed_data<float>());
    c.g.push_back(g->typed_data<float>());
    c.w_out.push_back((*wo)->typed_data<float>());
    c.start.push_back(c.start.back() + static_cast<int64_t>(w->element_count()));
  }
  const int64_t total = c.start.back();
  c.slot_base = slot_base;
  for (int64_t j = 0; j < S; ++j) {
    auto s = arg(1 + 2 * k + j);
    auto so = ret(k + j);
    if (s.has_error() || so.has_error() || s->element_type() != ffi::DataType::F32 ||
        (*so)->element_count() != s->element_count() || slot_base < 0 ||
        slot_base + total > static_cast<int64_t>(s->element_count()))
      return ffi::Error::InvalidArgument("mxjax: slot buffer does not fit the leaves");
    c.s.push_back(s->typed_data<float>());
    c.s_out.push_back((*so)->typed_data<float>());
  }
  const int64_t chunks = (total + kChunk - 1) / kChunk;
  const int64_t threads = pool.num_threads();
  if (total < kParallelMin || threads < 1) {
    RunRange(c, 0, total);
    return ffi::Error::Success();
  }
  // Work sharing: helpers and this thread take chunks from a counter; this thread
  // only waits for chunks a helper has started, so a busy pool cannot deadlock it.
  auto sh = std::make_shared<Shared>();
  auto call = std::make_shared<Call>(c);
  const int64_t helpers = std::min<int64_t>(threads, chunks - 1);
  for (int64_t t = 0; t < helpers; ++t)
    pool.Schedule([sh, call, total, chunks] { Work(*call, *sh, total, chunks); });
  Work(*call, *sh, total, chunks);
  while (sh->done.load(std::memory_order_acquire) < chunks) std::this_thread::yield();
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MxjaxElementwise, Update,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Attr<ffi::Span<const int32_t>>("program")
                                  .Attr<int64_t>("n_leaves")
                                  .Attr<int64_t>("slot_base")
                                  .RemainingArgs()
                                  .RemainingRets());
