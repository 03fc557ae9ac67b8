// mxjax's multi-tensor kernel for XLA on CPU: one custom call updates many parameter
// tensors in place by running an optimizer's program over them.
//
// The program is the optimizer's traced JAX rule (mxjax/optimizer/_fused.py compiles it
// from the jaxpr): IEEE-exact float32 operations on blocks of kBlock elements. Every
// operation rounds to float32 on its own (built with -ffp-contract=off), so results agree
// with XLA's reference path evaluated operation by operation.
//
// Operands: u (float32[U], the step's scalars), ul (float32[k, C], per-leaf scalars),
// w_1..w_k (the parameters), g_1..g_k (their gradients), S_1..S_s (flat slot buffers
// shared by the group; the call's leaves occupy [slot_base, slot_base + sum n_i) in
// order). Results: w_1'..w_k', S_1'..S_s', aliased to the operands by the caller, so the
// update happens in place. Attribute `sizes` holds n_1..n_k. With `packed` = 1 the leaves
// lie back to back in one w, one g and one w' (mxjax.optimizer.Packed parameters):
// operands u, ul, w, g, S_1..S_s, results w', S_1'..S_s'.
//
// A program is a sequence of phases. An *element* phase runs its instructions over every
// block of every leaf; a *scalar* phase runs once per leaf on per-leaf registers (LAMB's
// trust ratio). kReduceAdd sums an element register over a leaf into a per-leaf register
// (available from the next phase on). Only the last phase, an element phase, writes the
// outputs; earlier phases only reduce, and later phases recompute what they need from the
// inputs, which stay untouched until then.
//
// A leaf of at most kChunk elements runs every phase back to back on one thread, so its
// data is still in cache when a later phase reads it again (LAMB on thousands of small
// tensors reads memory once, not twice); larger leaves run phase by phase, split into
// segments of kChunk elements shared by the threads. Both orders give the same bits: a
// leaf's sums are added segment by segment in order either way.
//
// An element phase may also have a compiled loop (mxjax/_kernels/codegen.py writes the
// phase as C, compiled and registered through MxjaxRegisterFused): the call then runs it
// on each segment instead of RunBlock, with the same operations, order and bits.
//
// The program encoding (opcodes, layout, each operation's expression and XLA's semantics
// of max/min/sign) is described once, in mxjax/_kernels/program.py, which generates
// program.h (included below) and gives the compiled loops the same expressions.

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Below this many elements in one call, threads cost more than they save.
constexpr int64_t kParallelMin = 1 << 14;
// The most elements in one unit of parallel work (a segment of one leaf).
constexpr int64_t kChunk = 1 << 15;
#include "program.h"  // kBlock, kMaxSlots, the opcodes and their expressions

enum Kind : int8_t { kInput, kUniform, kLeafUniform, kPerLeaf, kTemp };

struct Instr {
  int32_t op, dst, a, b, c;
};
static_assert(sizeof(Instr) == kInstrWidth * sizeof(int32_t), "program.py's layout");

struct Phase {
  bool scalar;
  std::vector<Instr> code;
};

struct Program {
  int32_t n_regs = 0, n_slots = 0;
  std::vector<std::pair<int32_t, int32_t>> uniforms;       // (reg, index into u)
  std::vector<std::pair<int32_t, int32_t>> leaf_uniforms;  // (reg, column of ul)
  std::vector<int32_t> per_leaf;                           // registers kept per leaf
  std::vector<int32_t> outs;                               // w', slot' registers
  std::vector<uint8_t> direct;                             // written in place by RunBlock
  std::vector<Phase> phases;
  std::vector<Kind> kind;
};

bool Parse(ffi::Span<const int32_t> p, Program* out) {
  size_t i = 0;
  auto next = [&](int32_t* v) {
    if (i >= p.size()) return false;
    *v = p[i++];
    return true;
  };
  int32_t n;
  if (!next(&out->n_regs) || !next(&out->n_slots)) return false;
  const int32_t fixed = 2 + out->n_slots;
  if (out->n_slots < 0 || out->n_slots > kMaxSlots || out->n_regs < fixed ||
      out->n_regs > (1 << 16))
    return false;
  out->kind.assign(out->n_regs, kTemp);
  std::fill_n(out->kind.begin(), fixed, kInput);
  auto ok = [&](int32_t r) { return r >= 0 && r < out->n_regs; };
  auto claim = [&](int32_t r, Kind k) {
    if (!ok(r) || out->kind[r] != kTemp) return false;
    out->kind[r] = k;
    return true;
  };
  for (auto [list, k] : {std::pair{&out->uniforms, kUniform},
                         std::pair{&out->leaf_uniforms, kLeafUniform}}) {
    if (!next(&n) || n < 0) return false;
    for (int32_t j = 0; j < n; ++j) {
      int32_t r, idx;
      if (!next(&r) || !next(&idx) || idx < 0 || !claim(r, k)) return false;
      list->emplace_back(r, idx);
    }
  }
  if (!next(&n) || n < 0) return false;
  for (int32_t j = 0; j < n; ++j) {
    int32_t r;
    if (!next(&r) || !claim(r, kPerLeaf)) return false;
    out->per_leaf.push_back(r);
  }
  for (int32_t j = 0; j < fixed - 1; ++j) {
    int32_t r;
    if (!next(&r) || !ok(r)) return false;
    out->outs.push_back(r);
  }
  for (int32_t j = 0; j < fixed - 1; ++j) {
    int32_t d;
    // Only a scratch register can be pointed at the destination.
    if (!next(&d) || (d != 0 && d != 1) || (d && out->kind[out->outs[j]] != kTemp))
      return false;
    out->direct.push_back(static_cast<uint8_t>(d));
  }
  if (!next(&n) || n < 1) return false;
  for (int32_t ph = 0; ph < n; ++ph) {
    int32_t kind, count;
    if (!next(&kind) || (kind != kPhaseElement && kind != kPhaseScalar) || !next(&count) ||
        count < 0)
      return false;
    Phase phase{kind == kPhaseScalar, {}};
    const bool last = ph + 1 == n;
    for (int32_t j = 0; j < count; ++j) {
      Instr in;
      if (!next(&in.op) || !next(&in.dst) || !next(&in.a) || !next(&in.b) ||
          !next(&in.c) || in.op < 0 || in.op >= kNumOps || !ok(in.dst) || !ok(in.a) ||
          !ok(in.b) || !ok(in.c))
        return false;
      const Kind d = out->kind[in.dst];
      if (phase.scalar) {  // per-leaf values only
        if (d != kPerLeaf || in.op == kReduceAdd) return false;
        for (int32_t r : {in.a, in.b, in.c})
          if (out->kind[r] == kInput || out->kind[r] == kTemp) return false;
      } else if (in.op == kReduceAdd ? (d != kPerLeaf || last) : d != kTemp) {
        return false;
      }
      phase.code.push_back(in);
    }
    out->phases.push_back(std::move(phase));
  }
  return i == p.size() && !out->phases.back().scalar;
}

// XLA's CPU runtime computes with denormals flushed to zero (MXCSR FTZ and DAZ on x86);
// the call sets the same on each thread it runs on, for its duration.
class FlushDenormals {
#if defined(__SSE__) || defined(__x86_64__)
 public:
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }
  ~FlushDenormals() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#endif
};

// Runs instructions on n <= kBlock elements. regs[r] points at register r's n values;
// kReduceAdd adds the block's sum to red[dst] (eight interleaved partial sums, combined
// in a fixed order: the result depends only on the data and the blocking).
// On x86-64 Linux, built for AVX2 and for the baseline; the loader picks what the CPU
// runs. (-ffp-contract=off keeps FMA out of both.)
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
__attribute__((target_clones("avx2", "default")))
#endif
void RunBlock(const Instr* code, size_t count, float** regs, int64_t n, float* red) {
  for (size_t k = 0; k < count; ++k) {
    const Instr& in = code[k];
    float* __restrict d = regs[in.dst];
    const float* a = regs[in.a];
    const float* b = regs[in.b];
    const float* c = regs[in.c];
#define MX_LOOP(expr) \
  for (int64_t i = 0; i < n; ++i) d[i] = (expr); \
  break;
    switch (in.op) {
      MXJAX_OP_CASES(MX_LOOP)
      case kReduceAdd: {
        float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
          for (int l = 0; l < 8; ++l) s[l] += a[i + l];
        for (int l = 0; i < n; ++i, ++l) s[l] += a[i];
        red[in.dst] += ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
        break;
      }
      default: break;
    }
#undef MX_LOOP
  }
}

// An element phase's compiled loop (mxjax/_kernels/codegen.py) over one segment: in =
// w, g, slots at the segment's first element; out = the destinations of w', slots'
// (last phase); scalars[r] = register r's value where it is one value per leaf; red =
// the segment's per-leaf sums (earlier phases; summed in the interpreter's order).
// Registered by the program's full contents and the phase's index.
using FusedFn = void (*)(const float* const* in, float* const* out, const float* scalars,
                         float* red, int64_t n);

std::mutex fused_mutex;
std::unordered_map<std::string, FusedFn>& FusedLoops() {
  static auto* loops = new std::unordered_map<std::string, FusedFn>();
  return *loops;
}

std::string ProgramKey(const int32_t* p, size_t n, int32_t phase) {
  std::string key(reinterpret_cast<const char*>(p), n * sizeof(int32_t));
  key.append(reinterpret_cast<const char*>(&phase), sizeof(phase));
  return key;
}

FusedFn FindFused(ffi::Span<const int32_t> p, int32_t phase) {
  std::lock_guard<std::mutex> lock(fused_mutex);
  auto it = FusedLoops().find(ProgramKey(p.begin(), p.size(), phase));
  return it == FusedLoops().end() ? nullptr : it->second;
}

struct Call {
  const Program* prog;
  std::vector<FusedFn> fused;  // per phase: its compiled loop, if registered
  const float* u;
  const float* ul;  // [k, n_cols]
  int64_t n_cols;
  std::vector<const float*> w, g, s;
  std::vector<float*> w_out, s_out;
  std::vector<int64_t> start;  // prefix sums of the leaves' sizes (k + 1 entries)
  int64_t slot_base;
  // Segments of the large leaves: (leaf, first element, last element + 1), in order.
  std::vector<int64_t> seg_leaf, seg_lo, seg_hi;
  std::vector<int64_t> small;    // the leaves of at most kChunk elements, run whole
  std::vector<float> leaf_vals;  // [k, n_regs]: per-leaf registers
  std::vector<float> seg_red;    // [segments, n_regs]: one phase's partial sums
};

// One thread's registers.
struct Scratch {
  std::vector<float> blocks;
  std::vector<float*> regs;
  std::vector<float> scalars;  // [n_regs]: the broadcast registers' values, for c.fused
  std::vector<float> red;      // [n_regs]: a whole leaf's sums (RunLeaf)
  int64_t leaf = -1;   // whose per-leaf values are in `scalars` (and the registers)
  int64_t filled = 0;  // how many elements of each per-leaf register hold them

  explicit Scratch(const Call& c) {
    const Program& p = *c.prog;
    blocks.resize(static_cast<size_t>(p.n_regs + 1 + p.n_slots) * kBlock);
    red.resize(p.n_regs);
    regs.resize(p.n_regs);
    for (int32_t r = 0; r < p.n_regs; ++r) regs[r] = blocks.data() + r * kBlock;
    scalars.assign(p.n_regs, 0.0f);
    for (auto& [r, k] : p.uniforms) {
      std::fill_n(regs[r], kBlock, c.u[k]);
      scalars[r] = c.u[k];
    }
  }
  float* stage(int32_t o) { return blocks.data() + (regs.size() + o) * kBlock; }

  // Loads a leaf's per-leaf values into `scalars` and the first `width` elements of
  // their registers (kBlock for the interpreter, 1 for a scalar phase, 0 for a compiled
  // loop, which reads `scalars`): thousands of small leaves pay no block fills.
  void Enter(const Call& c, int64_t leaf_index, int64_t width) {
    if (leaf == leaf_index && filled >= width) return;
    if (leaf != leaf_index) {
      leaf = leaf_index;
      filled = 0;
      const Program& p = *c.prog;
      for (auto& [r, col] : p.leaf_uniforms) scalars[r] = c.ul[leaf * c.n_cols + col];
      for (int32_t r : p.per_leaf) scalars[r] = c.leaf_vals[leaf * p.n_regs + r];
    }
    if (width <= filled) return;
    const Program& p = *c.prog;
    for (auto& [r, col] : p.leaf_uniforms) std::fill_n(regs[r], width, scalars[r]);
    for (int32_t r : p.per_leaf) std::fill_n(regs[r], width, scalars[r]);
    filled = width;
  }
};

// One element phase on elements [lo, hi) of one leaf (flat positions); `last` writes the
// outputs, other phases add the segment's sums to red.
void RunSegment(const Call& c, const Phase& ph, FusedFn fn, bool last, int64_t leaf,
                int64_t lo, int64_t hi, float* red, Scratch& sc) {
  const Program& p = *c.prog;
  const int32_t S = p.n_slots, fixed = 2 + S;
  sc.Enter(c, leaf, fn ? 0 : kBlock);
  if (fn) {  // the compiled loop: the whole segment at once
    const int64_t j = lo - c.start[leaf], so = c.slot_base + lo;
    const float* in[2 + kMaxSlots];
    float* out[1 + kMaxSlots];
    in[0] = c.w[leaf] + j;
    in[1] = c.g[leaf] + j;
    out[0] = c.w_out[leaf] + j;
    for (int32_t k = 0; k < S; ++k) {
      in[2 + k] = c.s[k] + so;
      out[1 + k] = c.s_out[k] + so;
    }
    fn(in, out, sc.scalars.data(), last ? nullptr : red, hi - lo);
    return;
  }
  float** regs = sc.regs.data();
  for (int64_t pos = lo; pos < hi; pos += kBlock) {
    const int64_t n = std::min(kBlock, hi - pos);
    const int64_t j = pos - c.start[leaf];  // element index inside the leaf
    const int64_t so = c.slot_base + pos;   // index in the flat slot buffers
    // Inputs are read where they lie; outputs are written after the whole block is
    // computed, so writing them in place cannot disturb a read.
    regs[0] = const_cast<float*>(c.w[leaf] + j);
    regs[1] = const_cast<float*>(c.g[leaf] + j);
    for (int32_t k = 0; k < S; ++k) regs[2 + k] = const_cast<float*>(c.s[k] + so);
    float* dst[1 + kMaxSlots];
    if (last) {
      dst[0] = c.w_out[leaf] + j;
      for (int32_t k = 0; k < S; ++k) dst[1 + k] = c.s_out[k] + so;
      // The compiler marked these outputs direct: their input is read for the last time
      // before they are computed, so they can be computed in place.
      for (int32_t o = 0; o <= S; ++o)
        if (p.direct[o]) regs[p.outs[o]] = dst[o];
    }
    RunBlock(ph.code.data(), ph.code.size(), regs, n, red);
    if (!last) continue;
    // An output that is another input's unchanged value (DCASGD keeps the old weight)
    // is staged first: that input's memory may be the destination of another output.
    const float* src[1 + kMaxSlots];
    for (int32_t o = 0; o <= S; ++o) {
      const int32_t r = p.outs[o];
      src[o] = regs[r];
      if (r < fixed && r != 1 && r != (o == 0 ? 0 : 1 + o)) {
        std::memcpy(sc.stage(o), regs[r], n * sizeof(float));
        src[o] = sc.stage(o);
      }
    }
    for (int32_t o = 0; o <= S; ++o)
      if (src[o] != dst[o]) std::memcpy(dst[o], src[o], n * sizeof(float));
  }
  if (last)  // the direct outputs' registers point into the operands: back to scratch
    for (int32_t o = 0; o <= S; ++o)
      if (p.direct[o]) regs[p.outs[o]] = sc.blocks.data() + p.outs[o] * kBlock;
}

// One scalar phase for one leaf: its per-leaf registers, updated in c.leaf_vals.
void RunScalar(const Call& c, const Phase& ph, int64_t leaf, Scratch& sc) {
  const Program& p = *c.prog;
  sc.leaf = -1;  // the leaf's values may have changed since they were loaded
  sc.Enter(c, leaf, 1);
  RunBlock(ph.code.data(), ph.code.size(), sc.regs.data(), 1, nullptr);
  float* vals = const_cast<float*>(c.leaf_vals.data()) + leaf * p.n_regs;
  for (int32_t r : p.per_leaf) vals[r] = sc.regs[r][0];
}

// Adds one element phase's sums over a segment (red) to a leaf's registers (vals).
void AddSums(const Phase& ph, float* vals, const float* red) {
  for (const Instr& in : ph.code)
    if (in.op == kReduceAdd) vals[in.dst] += red[in.dst];
}

// Every phase of a leaf of at most kChunk elements, back to back: its sums are its one
// segment's, added to zero, as the phase-by-phase order adds them.
void RunLeaf(const Call& c, int64_t leaf, Scratch& sc) {
  const Program& p = *c.prog;
  float* vals = const_cast<float*>(c.leaf_vals.data()) + leaf * p.n_regs;
  for (size_t ph = 0; ph < p.phases.size(); ++ph) {
    const Phase& phase = p.phases[ph];
    if (phase.scalar) {
      RunScalar(c, phase, leaf, sc);
      continue;
    }
    const bool last = ph + 1 == p.phases.size();
    std::fill(sc.red.begin(), sc.red.end(), 0.0f);
    sc.leaf = -1;
    RunSegment(c, phase, c.fused[ph], last, leaf, c.start[leaf], c.start[leaf + 1],
               sc.red.data(), sc);
    if (last) break;
    AddSums(phase, vals, sc.red.data());
  }
}

// Runs fn(item, scratch) for items [0, n): on this thread, and on the pool when there is
// enough work. Helpers and this thread take items from a counter; this thread only waits
// for items a helper has started, so a busy pool cannot deadlock it.
void ParallelFor(ffi::ThreadPool& pool, bool parallel, const Call& c, int64_t n,
                 int64_t batch, const std::function<void(int64_t, Scratch&)>& fn) {
  struct Shared {
    std::atomic<int64_t> next{0}, done{0};
  };
  auto sh = std::make_shared<Shared>();
  // Items are taken `batch` at a time: thousands of small segments would otherwise
  // spend more time passing the counters between cores than computing.
  // A helper that starts after the last item was taken touches nothing but `sh`.
  auto work = [&c, n, batch, fn, sh] {
    FlushDenormals flush;
    std::unique_ptr<Scratch> sc;
    for (int64_t k0; (k0 = sh->next.fetch_add(batch)) < n;) {
      if (!sc) sc = std::make_unique<Scratch>(c);
      const int64_t k1 = std::min(k0 + batch, n);
      for (int64_t k = k0; k < k1; ++k) fn(k, *sc);
      sh->done.fetch_add(k1 - k0, std::memory_order_release);
    }
  };
  const int64_t helpers =
      parallel ? std::min<int64_t>(pool.num_threads() - 1, (n - 1) / batch) : 0;
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule(decltype(work)(work));
  work();
  while (sh->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

ffi::Error Update(ffi::ThreadPool pool, ffi::Span<const int32_t> program,
                  int64_t n_leaves, int64_t slot_base, ffi::Span<const int64_t> sizes,
                  int64_t packed, ffi::RemainingArgs args, ffi::RemainingRets rets) {
  FlushDenormals flush;  // the scalar phases run on this thread
  Program p;
  if (!Parse(program, &p)) return ffi::Error::InvalidArgument("mxjax: malformed program");
  const int64_t k = n_leaves, S = p.n_slots, kw = packed ? 1 : k;  // w operands
  if (k < 1 || static_cast<int64_t>(sizes.size()) != k ||
      static_cast<int64_t>(args.size()) != 2 + 2 * kw + S ||
      static_cast<int64_t>(rets.size()) != kw + S)
    return ffi::Error::InvalidArgument("mxjax: operand count does not match the program");
  auto arg = [&](size_t i) { return args.get<ffi::AnyBuffer>(i); };
  auto ret = [&](size_t i) { return rets.get<ffi::AnyBuffer>(i); };
  auto f32 = [](const auto& b) { return b.element_type() == ffi::DataType::F32; };
  Call c;
  c.prog = &p;
  for (size_t ph = 0; ph < p.phases.size(); ++ph)
    c.fused.push_back(p.phases[ph].scalar ? nullptr : FindFused(program, ph));
  auto u = arg(0), ul = arg(1);
  if (u.has_error() || ul.has_error() || !f32(*u) || !f32(*ul))
    return ffi::Error::InvalidArgument("mxjax: u and ul must be float32");
  for (auto& [r, idx] : p.uniforms)
    if (idx >= static_cast<int64_t>(u->element_count()))
      return ffi::Error::InvalidArgument("mxjax: uniform index out of range");
  c.n_cols = static_cast<int64_t>(ul->element_count()) / k;
  if (c.n_cols * k != static_cast<int64_t>(ul->element_count()))
    return ffi::Error::InvalidArgument("mxjax: ul must have one row per leaf");
  for (auto& [r, col] : p.leaf_uniforms)
    if (col >= c.n_cols) return ffi::Error::InvalidArgument("mxjax: ul column out of range");
  c.u = u->typed_data<float>();
  c.ul = ul->typed_data<float>();
  c.start.push_back(0);
  for (int64_t i = 0; i < k; ++i) {
    if (sizes[i] < 0) return ffi::Error::InvalidArgument("mxjax: negative leaf size");
    c.start.push_back(c.start.back() + sizes[i]);
  }
  for (int64_t i = 0; i < kw; ++i) {
    auto w = arg(2 + i), g = arg(2 + kw + i);
    auto wo = ret(i);
    const int64_t n = packed ? c.start.back() : sizes[i];
    if (w.has_error() || g.has_error() || wo.has_error() || !f32(*w) || !f32(*g) ||
        !f32(**wo) || static_cast<int64_t>(w->element_count()) != n ||
        g->element_count() != w->element_count() ||
        (*wo)->element_count() != w->element_count())
      return ffi::Error::InvalidArgument(
          "mxjax: parameters must be float32, like their grads, of the given sizes");
  }
  for (int64_t i = 0; i < k; ++i) {  // leaf i's data: its own operand, or its part of one
    const int64_t a = packed ? 0 : i, off = packed ? c.start[i] : 0;
    c.w.push_back(arg(2 + a)->typed_data<float>() + off);
    c.g.push_back(arg(2 + kw + a)->typed_data<float>() + off);
    c.w_out.push_back((*ret(a))->typed_data<float>() + off);
  }
  const int64_t total = c.start.back();
  c.slot_base = slot_base;
  for (int64_t j = 0; j < S; ++j) {
    auto s = arg(2 + 2 * kw + j);
    auto so = ret(kw + j);
    if (s.has_error() || so.has_error() || !f32(*s) ||
        (*so)->element_count() != s->element_count() || slot_base < 0 ||
        slot_base + total > static_cast<int64_t>(s->element_count()))
      return ffi::Error::InvalidArgument("mxjax: slot buffer does not fit the leaves");
    c.s.push_back(s->typed_data<float>());
    c.s_out.push_back((*so)->typed_data<float>());
  }
  int64_t small_total = 0;  // elements in the small leaves
  for (int64_t i = 0; i < k; ++i) {
    if (sizes[i] <= kChunk) {
      if (sizes[i] > 0) c.small.push_back(i);
      small_total += sizes[i];
      continue;
    }
    for (int64_t lo = c.start[i]; lo < c.start[i + 1]; lo += kChunk) {
      c.seg_leaf.push_back(i);
      c.seg_lo.push_back(lo);
      c.seg_hi.push_back(std::min(lo + kChunk, c.start[i + 1]));
    }
  }
  const int64_t n_seg = static_cast<int64_t>(c.seg_leaf.size());
  const int64_t n_small = static_cast<int64_t>(c.small.size());
  c.leaf_vals.assign(static_cast<size_t>(k) * p.n_regs, 0.0f);
  const bool parallel = total >= kParallelMin;
  if (n_small) {  // about kChunk elements per batch of leaves
    const int64_t batch =
        std::max<int64_t>(1, kChunk * n_small / std::max<int64_t>(small_total, 1));
    ParallelFor(pool, parallel, c, n_small, batch,
                [&c](int64_t item, Scratch& sc) { RunLeaf(c, c.small[item], sc); });
  }
  if (!n_seg) return ffi::Error::Success();
  for (size_t ph = 0; ph < p.phases.size(); ++ph) {
    const Phase& phase = p.phases[ph];
    if (phase.scalar) {  // once per large leaf, on its per-leaf registers
      Scratch sc(c);
      for (int64_t i = 0; i < k; ++i)
        if (sizes[i] > kChunk) RunScalar(c, phase, i, sc);
      continue;
    }
    const bool last = ph + 1 == p.phases.size();
    c.seg_red.assign(last ? 0 : static_cast<size_t>(n_seg) * p.n_regs, 0.0f);
    FusedFn fn = c.fused[ph];
    ParallelFor(pool, parallel, c, n_seg, 1,
                [&c, &phase, fn, last](int64_t s, Scratch& sc) {
      const float* red = last ? nullptr : c.seg_red.data() + s * c.prog->n_regs;
      RunSegment(c, phase, fn, last, c.seg_leaf[s], c.seg_lo[s], c.seg_hi[s],
                 const_cast<float*>(red), sc);
    });
    if (last) break;
    for (int64_t s = 0; s < n_seg; ++s)  // in order: a deterministic sum
      AddSums(phase, c.leaf_vals.data() + c.seg_leaf[s] * p.n_regs,
              c.seg_red.data() + s * p.n_regs);
  }
  return ffi::Error::Success();
}

}  // namespace

// Registers the compiled loop of a program's element phase; returns 1 if the program
// parses and `phase` is one of its element phases, else 0.
extern "C" int MxjaxRegisterFused(const int32_t* program, int64_t n, int32_t phase,
                                  void* fn) {
  if (program == nullptr || n <= 0 || fn == nullptr) return 0;
  Program p;
  if (!Parse(ffi::Span<const int32_t>(program, static_cast<size_t>(n)), &p) || phase < 0 ||
      static_cast<size_t>(phase) >= p.phases.size() || p.phases[phase].scalar)
    return 0;
  std::lock_guard<std::mutex> lock(fused_mutex);
  FusedLoops()[ProgramKey(program, static_cast<size_t>(n), phase)] =
      reinterpret_cast<FusedFn>(fn);
  return 1;
}

// The XLA FFI API version of the headers this library was built with, and jaxlib's
// version: mxjax compares them with the running jaxlib's before registering the handlers
// (XLA refuses a handler newer than itself at every call).
extern "C" void MxjaxFfiApiVersion(int32_t* major, int32_t* minor) {
  *major = XLA_FFI_API_MAJOR;
  *minor = XLA_FFI_API_MINOR;
}

// The digest of the encoding this library was built with (program.h): mxjax refuses a
// library built from another program.py (a stale build).
extern "C" const char* MxjaxEncoding() { return kEncoding; }

#ifndef MXJAX_JAXLIB_VERSION
#define MXJAX_JAXLIB_VERSION "unknown"
#endif
extern "C" const char* MxjaxBuiltWithJaxlib() { return MXJAX_JAXLIB_VERSION; }

// Forgets every compiled loop: the interpreter runs every program again.
extern "C" void MxjaxClearFused() {
  std::lock_guard<std::mutex> lock(fused_mutex);
  FusedLoops().clear();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(MxjaxElementwise, Update,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Attr<ffi::Span<const int32_t>>("program")
                                  .Attr<int64_t>("n_leaves")
                                  .Attr<int64_t>("slot_base")
                                  .Attr<ffi::Span<const int64_t>>("sizes")
                                  .Attr<int64_t>("packed")
                                  .RemainingArgs()
                                  .RemainingRets());

// Packed parameters (mxjax.optimizer.Packed): a buffer's leaves, copied out back to back.
// One call however many leaves (XLA compiles one kernel per slice, ~15 ms each).
namespace {

ffi::Error Unpack(ffi::AnyBuffer packed, ffi::RemainingRets rets) {
  const char* src = static_cast<const char*>(packed.untyped_data());
  size_t off = 0;
  for (size_t i = 0; i < rets.size(); ++i) {
    auto r = rets.get<ffi::AnyBuffer>(i);
    if (r.has_error() || (*r)->element_type() != packed.element_type())
      return ffi::Error::InvalidArgument("mxjax: unpack results must have the buffer's dtype");
    const size_t n = (*r)->size_bytes();
    if (off + n > packed.size_bytes())
      return ffi::Error::InvalidArgument("mxjax: the leaves do not fit the buffer");
    std::memcpy((*r)->untyped_data(), src + off, n);
    off += n;
  }
  if (off != packed.size_bytes())
    return ffi::Error::InvalidArgument("mxjax: the leaves do not fill the buffer");
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MxjaxUnpack, Unpack,
                              ffi::Ffi::Bind().Arg<ffi::AnyBuffer>().RemainingRets());
