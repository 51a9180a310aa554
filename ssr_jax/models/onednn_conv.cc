// oneDNN 2-D convolutions (NHWC activations, HWIO kernels, float32) as XLA:CPU FFI handlers, for
// ssr_jax/models/onednn.py: the forward pass (optionally with a per-channel bias and ReLU/tanh fused as oneDNN
// post-ops), the input gradient (backward data) and the kernel gradient (backward weights).
//
// oneDNN primitives are created once per geometry and kept (creating one JIT-compiles its kernel); executing a
// primitive is thread-safe, and each call brings its own scratchpad, so XLA may run calls concurrently.
//
// Each call says how many OpenMP threads it runs on (`threads`; 0: the process's default, OMP_NUM_THREADS or all
// cores): XLA:CPU runs independent operations concurrently on its own threads (SSR-Net's two streams), so a call
// that takes every core competes with them. A primitive is made for, and always run with, one thread count.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

// GNU OpenMP, which the oneDNN wheel (onednn-cpu-gomp) is built on and loads.
extern "C" {
int omp_get_max_threads(void);
void omp_set_num_threads(int);
}

namespace ffi = xla::ffi;
using dnnl::memory;
using Tag = memory::format_tag;
constexpr auto kF32 = memory::data_type::f32;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// Input `[n, h, w, ci]`, kernel `[kh, kw, ci, co]`, output `[n, oh, ow, co]`, strides and padding.
struct Geometry {
  int64_t n, h, w, ci, kh, kw, co, oh, ow, sh, sw, pt, pb, pl, pr;
  std::string Key(char kind, int64_t extra) const {
    std::string key(1, kind);
    for (int64_t v : {n, h, w, ci, kh, kw, co, oh, ow, sh, sw, pt, pb, pl, pr, extra}) {
      key += ',' + std::to_string(v);
    }
    return key;
  }
  memory::desc Src() const { return memory::desc({n, ci, h, w}, kF32, Tag::nhwc); }
  memory::desc Dst() const { return memory::desc({n, co, oh, ow}, kF32, Tag::nhwc); }
  memory::desc KernelHwio() const { return memory::desc({co, ci, kh, kw}, kF32, Tag::hwio); }
  memory::desc KernelAny() const { return memory::desc({co, ci, kh, kw}, kF32, Tag::any); }
  memory::dims Strides() const { return {sh, sw}; }
  memory::dims PadLow() const { return {pt, pl}; }
  memory::dims PadHigh() const { return {pb, pr}; }
};

dnnl::primitive_attr UserScratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g, dnnl::prop_kind prop, bool bias,
                                                      const dnnl::primitive_attr& attr) {
  if (bias) {
    return dnnl::convolution_forward::primitive_desc(
        Engine(), prop, dnnl::algorithm::convolution_direct, g.Src(), g.KernelAny(),
        memory::desc({g.co}, kF32, Tag::a), g.Dst(), g.Strides(), g.PadLow(), g.PadHigh(), attr);
  }
  return dnnl::convolution_forward::primitive_desc(Engine(), prop, dnnl::algorithm::convolution_direct, g.Src(),
                                                   g.KernelAny(), g.Dst(), g.Strides(), g.PadLow(), g.PadHigh(),
                                                   attr);
}

// A primitive, the kernel layout it wants (reordered from/to HWIO when it differs) and its scratchpad size.
struct Entry {
  dnnl::primitive primitive;
  memory::desc kernel;
  bool reorder = false;
  dnnl::reorder kernel_reorder;
  size_t scratchpad_bytes = 0;
};

enum Kind : char { kForward = 'f', kBackwardData = 'd', kBackwardWeights = 'w' };

template <typename PrimitiveDesc, typename Primitive>
std::unique_ptr<Entry> MakeEntry(const PrimitiveDesc& pd, const memory::desc& kernel, bool kernel_is_output,
                                 const Geometry& g) {
  auto entry = std::make_unique<Entry>();
  entry->primitive = Primitive(pd);
  entry->kernel = kernel;
  entry->reorder = kernel != g.KernelHwio();
  if (entry->reorder) {
    entry->kernel_reorder = kernel_is_output ? dnnl::reorder(dnnl::reorder::primitive_desc(
                                                   Engine(), kernel, Engine(), g.KernelHwio()))
                                             : dnnl::reorder(dnnl::reorder::primitive_desc(
                                                   Engine(), g.KernelHwio(), Engine(), kernel));
  }
  entry->scratchpad_bytes = pd.scratchpad_desc().get_size();
  return entry;
}

// act: 0 none, 1 ReLU, 2 tanh (applied after the bias).
std::unique_ptr<Entry> Create(Kind kind, const Geometry& g, bool bias, int64_t act) {
  dnnl::primitive_attr attr = UserScratchpad();
  if (kind == kForward) {
    if (act != 0) {
      dnnl::post_ops ops;
      ops.append_eltwise(act == 1 ? dnnl::algorithm::eltwise_relu : dnnl::algorithm::eltwise_tanh, 0.f, 0.f);
      attr.set_post_ops(ops);
    }
    auto pd = ForwardDesc(g, dnnl::prop_kind::forward_inference, bias, attr);
    return MakeEntry<decltype(pd), dnnl::convolution_forward>(pd, pd.weights_desc(), false, g);
  }
  auto hint = ForwardDesc(g, dnnl::prop_kind::forward_training, false, dnnl::primitive_attr());
  if (kind == kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc pd(Engine(), dnnl::algorithm::convolution_direct, g.Src(),
                                                       g.KernelAny(), g.Dst(), g.Strides(), g.PadLow(),
                                                       g.PadHigh(), hint, attr);
    return MakeEntry<decltype(pd), dnnl::convolution_backward_data>(pd, pd.weights_desc(), false, g);
  }
  dnnl::convolution_backward_weights::primitive_desc pd(Engine(), dnnl::algorithm::convolution_direct, g.Src(),
                                                        g.KernelAny(), g.Dst(), g.Strides(), g.PadLow(),
                                                        g.PadHigh(), hint, attr);
  return MakeEntry<decltype(pd), dnnl::convolution_backward_weights>(pd, pd.diff_weights_desc(), true, g);
}

const Entry& Lookup(Kind kind, const Geometry& g, bool bias, int64_t act, int threads) {
  static std::mutex mutex;
  static std::unordered_map<std::string, std::unique_ptr<Entry>> cache;
  const std::string key = g.Key(kind, act * 2 + bias) + ";" + std::to_string(threads);
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = cache[key];
  if (!slot) slot = Create(kind, g, bias, act);
  return *slot;
}

// Per-thread scratch memory (scratchpad, reordered kernel), grown as needed and reused.
void* Scratch(int which, size_t bytes) {
  thread_local std::vector<char> buffers[2];
  auto& buffer = buffers[which];
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

Geometry MakeGeometry(ffi::AnyBuffer::Dimensions in, ffi::AnyBuffer::Dimensions kernel,
                      ffi::AnyBuffer::Dimensions out, int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl,
                      int64_t pr) {
  return Geometry{in[0], in[1], in[2], in[3], kernel[0], kernel[1], kernel[3], out[1], out[2],
                  sh,    sw,    pt,    pb,    pl,        pr};
}

bool Valid(ffi::AnyBuffer::Dimensions in, ffi::AnyBuffer::Dimensions kernel, ffi::AnyBuffer::Dimensions out) {
  return in.size() == 4 && kernel.size() == 4 && out.size() == 4 && in[3] == kernel[2] && out[3] == kernel[3] &&
         in[0] == out[0];
}

// The process's default thread count, read before any call changes this thread's (OpenMP keeps it per thread).
int DefaultThreads() {
  static const int threads = omp_get_max_threads();
  return threads;
}

ffi::Error Run(Kind kind, const Geometry& g, float* src, float* kernel, float* dst, float* bias, int64_t act,
               int64_t threads) {
  try {
    // Read first: the first call anywhere reads the default before any call has changed its thread's count.
    const int fallback = DefaultThreads();
    // Set on every call: the XLA thread running this call may have run one with another count before.
    const int team = threads > 0 ? static_cast<int>(threads) : fallback;
    omp_set_num_threads(team);
    const Entry& entry = Lookup(kind, g, bias != nullptr, act, team);
    dnnl::stream stream(Engine());
    memory src_m(g.Src(), Engine(), src), dst_m(g.Dst(), Engine(), dst);
    memory hwio(g.KernelHwio(), Engine(), kernel);
    memory kernel_m = entry.reorder ? memory(entry.kernel, Engine(), Scratch(1, entry.kernel.get_size())) : hwio;
    memory scratchpad(memory::desc({static_cast<int64_t>(entry.scratchpad_bytes)}, memory::data_type::u8, Tag::a),
                      Engine(), Scratch(0, entry.scratchpad_bytes));
    if (kind != kBackwardWeights && entry.reorder) entry.kernel_reorder.execute(stream, hwio, kernel_m);
    std::unordered_map<int, memory> args{{DNNL_ARG_SCRATCHPAD, scratchpad}};
    if (kind == kForward) {
      args.insert({{DNNL_ARG_SRC, src_m}, {DNNL_ARG_WEIGHTS, kernel_m}, {DNNL_ARG_DST, dst_m}});
      if (bias) args.insert({DNNL_ARG_BIAS, memory(memory::desc({g.co}, kF32, Tag::a), Engine(), bias)});
    } else if (kind == kBackwardData) {
      args.insert({{DNNL_ARG_DIFF_SRC, src_m}, {DNNL_ARG_WEIGHTS, kernel_m}, {DNNL_ARG_DIFF_DST, dst_m}});
    } else {
      args.insert({{DNNL_ARG_SRC, src_m}, {DNNL_ARG_DIFF_WEIGHTS, kernel_m}, {DNNL_ARG_DIFF_DST, dst_m}});
    }
    entry.primitive.execute(stream, args);
    if (kind == kBackwardWeights && entry.reorder) entry.kernel_reorder.execute(stream, kernel_m, hwio);
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("oneDNN: ") + e.what());
  }
  return ffi::Error::Success();
}

#define SSR_CONV_ATTRS                                                                                       \
  .Attr<int64_t>("stride_h").Attr<int64_t>("stride_w").Attr<int64_t>("pad_top").Attr<int64_t>("pad_bottom") \
      .Attr<int64_t>("pad_left")                                                                              \
      .Attr<int64_t>("pad_right")                                                                             \
      .Attr<int64_t>("threads")

const char kBadShapes[] = "onednn_conv: expected [n,h,w,ci] ⋆ [kh,kw,ci,co] → [n,oh,ow,co] float32";

ffi::Error Forward(ffi::Buffer<ffi::F32> in, ffi::Buffer<ffi::F32> kernel, ffi::ResultBuffer<ffi::F32> out,
                   int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr, int64_t threads) {
  if (!Valid(in.dimensions(), kernel.dimensions(), out->dimensions())) return ffi::Error::InvalidArgument(kBadShapes);
  auto g = MakeGeometry(in.dimensions(), kernel.dimensions(), out->dimensions(), sh, sw, pt, pb, pl, pr);
  return Run(kForward, g, in.typed_data(), kernel.typed_data(), out->typed_data(), nullptr, 0, threads);
}

ffi::Error ForwardBiasAct(ffi::Buffer<ffi::F32> in, ffi::Buffer<ffi::F32> kernel, ffi::Buffer<ffi::F32> bias,
                          ffi::ResultBuffer<ffi::F32> out, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
                          int64_t pl, int64_t pr, int64_t threads, int64_t act) {
  if (!Valid(in.dimensions(), kernel.dimensions(), out->dimensions())) return ffi::Error::InvalidArgument(kBadShapes);
  auto g = MakeGeometry(in.dimensions(), kernel.dimensions(), out->dimensions(), sh, sw, pt, pb, pl, pr);
  return Run(kForward, g, in.typed_data(), kernel.typed_data(), out->typed_data(), bias.typed_data(), act, threads);
}

// Gradient of the input: from the output's cotangent `[n, oh, ow, co]` and the kernel → `[n, h, w, ci]`.
ffi::Error BackwardData(ffi::Buffer<ffi::F32> cotangent, ffi::Buffer<ffi::F32> kernel,
                        ffi::ResultBuffer<ffi::F32> in_grad, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
                        int64_t pl, int64_t pr, int64_t threads) {
  if (!Valid(in_grad->dimensions(), kernel.dimensions(), cotangent.dimensions()))
    return ffi::Error::InvalidArgument(kBadShapes);
  auto g = MakeGeometry(in_grad->dimensions(), kernel.dimensions(), cotangent.dimensions(), sh, sw, pt, pb, pl, pr);
  return Run(kBackwardData, g, in_grad->typed_data(), kernel.typed_data(), cotangent.typed_data(), nullptr, 0,
             threads);
}

// Gradient of the kernel: from the input and the output's cotangent → `[kh, kw, ci, co]`.
ffi::Error BackwardWeights(ffi::Buffer<ffi::F32> in, ffi::Buffer<ffi::F32> cotangent,
                           ffi::ResultBuffer<ffi::F32> kernel_grad, int64_t sh, int64_t sw, int64_t pt, int64_t pb,
                           int64_t pl, int64_t pr, int64_t threads) {
  if (!Valid(in.dimensions(), kernel_grad->dimensions(), cotangent.dimensions()))
    return ffi::Error::InvalidArgument(kBadShapes);
  auto g = MakeGeometry(in.dimensions(), kernel_grad->dimensions(), cotangent.dimensions(), sh, sw, pt, pb, pl, pr);
  return Run(kBackwardWeights, g, in.typed_data(), kernel_grad->typed_data(), cotangent.typed_data(), nullptr, 0,
             threads);
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(SsrOnednnConvForward, Forward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() SSR_CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(SsrOnednnConvForwardBiasAct, ForwardBiasAct,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() SSR_CONV_ATTRS.Attr<int64_t>("activation"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(SsrOnednnConvBackwardData, BackwardData,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() SSR_CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(SsrOnednnConvBackwardWeights, BackwardWeights,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() SSR_CONV_ATTRS);
