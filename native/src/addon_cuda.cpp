// addon_cuda.cpp: the JS face of the CUDA training step (native/cuda/step.cuh).
//
// Built into ftcore.node when nvcc is found (FT_HAVE_CUDA: native/CMakeLists.txt), and into the
// CPU simulator's module (native/cuda/sim/addon.sh), which runs the same kernels on the CPU so
// that this binding and the trainer above it are tested on machines without a GPU.
//
//   cudaDevices() -> [{ index, name, computeCapability: "7.5", totalBytes, freeBytes }]
//       throws (code FT_NATIVE_CHECK) with CUDA's words and a hint when there is no usable GPU
//   new CudaTrainer(config, base, rank, scale, maxBatch, maxSeqLen[, precision])
//       config  as qwen3ForwardBackward's
//       base    { embed, finalNorm, layers: [{ inputNorm, postNorm, qNorm, kNorm,
//                 codes: Uint8Array[7] (NF4), absmax: Float32Array[7] (per 64, plain fp32) }] }
//       precision "fp16" (default; every GPU from sm_75) or "bf16" (sm_80+; refused elsewhere,
//               saying why): the operand type of the products
//       uploads the base (double-quantizing the absmax) and allocates everything a step of up to
//       maxBatch x maxSeqLen tokens needs
//   .setLora(proj)        proj: layers * 7 entries { A, B } or null (no adapter there: its LoRA
//                         products are skipped); copies the fp32 masters to the device and
//                         refreshes the 16-bit copies
//   .zeroGrads()
//   .step(ids, mask, batch, seqLen, backward, lossScale, dropout, seed) -> { loss, counted }
//                         backward: accumulates lossScale * d(loss)/d(LoRA) on the device
//   .getGrads(proj, factor)  proj: entries { dA, dB } or null (skipped); gradients x factor
//   .setOptimizerState(proj) proj: entries { A, B } (AdamW state of each, as native/index.ts's
//                         adamw8bitInit makes it: { kind: "8bit", mCodes, vCodes, mAbsmax, vAbsmax }
//                         or { kind: "fp32", m, v }) or null: copied to the device, where
//                         .optimizerStep runs AdamW from then on
//   .getOptimizerState(proj) the same shape: the device's state copied into those arrays
//   .getLora(proj)        proj: entries { A, B } or null: the device's fp32 masters copied there
//   .unscaleGrads(factor, divisor) -> the gradients = (g x factor) / divisor in place; the sum of
//                         their squares (NaN: one is not finite)
//   .optimizerStep(clip, hyper)  hyper: { lr, beta1, beta2, eps, weightDecay, step }: gradients
//                         x clip, AdamW on every adapted tensor, the 16-bit copies refreshed
//   .bytes() -> { weights, lora, activations, head, workspace, optimizer }  device bytes held
//   .close()              frees the device memory now (later calls throw)
//
// Errors: ft::Error (a bad argument, a CUDA failure with file:line and a hint) becomes a JS Error
// with code "FT_NATIVE_CHECK"; any other C++ exception becomes "FT_NATIVE_BUG", as in addon.cpp.
#include <napi.h>

#include <cuda_runtime.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "check.h"
#include "cuda_check.h"
#include "adamw.h"
#include "adamw8bit.h"
#include "nf4.h"
#include "qwen3.h"
#include "step.cuh"

namespace ft {
namespace {

Napi::Error nativeError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Value().Set("code", Napi::String::New(env, code));
  return error;
}

/** Runs f, turning C++ errors into JS errors (the one boundary of this file). */
template <typename F>
auto guarded(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (const Error& e) {
    throw nativeError(env, "FT_NATIVE_CHECK", e.what());
  } catch (const std::exception& e) {
    throw nativeError(env, "FT_NATIVE_BUG", std::string("native core bug: ") + e.what());
  }
}

template <typename T>
T* typed(const Napi::Value& v, napi_typedarray_type type, const char* typeName, std::size_t expected, const std::string& what) {
  FT_CHECK(v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == type, what, ": expected a ", typeName);
  auto a = v.As<Napi::TypedArray>();
  FT_CHECK(a.ElementLength() == expected, what, ": ", a.ElementLength(), " elements, expected ", expected);
  return reinterpret_cast<T*>(static_cast<std::uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
}
const float* f32(const Napi::Value& v, std::size_t n, const std::string& what) { return typed<float>(v, napi_float32_array, "Float32Array", n, what); }
float* f32w(const Napi::Value& v, std::size_t n, const std::string& what) { return typed<float>(v, napi_float32_array, "Float32Array", n, what); }

int intField(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  FT_CHECK(v.IsNumber(), "config.", key, ": expected a number");
  return v.As<Napi::Number>().Int32Value();
}
double number(const Napi::CallbackInfo& info, std::size_t i, const char* what) {
  FT_CHECK(i < info.Length() && info[i].IsNumber(), "CudaTrainer: ", what, " (argument ", i + 1, ") must be a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

class CudaTrainer : public Napi::ObjectWrap<CudaTrainer> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "CudaTrainer",
                       {InstanceMethod<&CudaTrainer::SetLora>("setLora"), InstanceMethod<&CudaTrainer::ZeroGrads>("zeroGrads"),
                        InstanceMethod<&CudaTrainer::Step>("step"), InstanceMethod<&CudaTrainer::GetGrads>("getGrads"),
                        InstanceMethod<&CudaTrainer::SetOptimizerState>("setOptimizerState"),
                        InstanceMethod<&CudaTrainer::GetOptimizerState>("getOptimizerState"), InstanceMethod<&CudaTrainer::GetLora>("getLora"),
                        InstanceMethod<&CudaTrainer::UnscaleGrads>("unscaleGrads"), InstanceMethod<&CudaTrainer::OptimizerStep>("optimizerStep"),
                        InstanceMethod<&CudaTrainer::Bytes>("bytes"), InstanceMethod<&CudaTrainer::Close>("close")});
  }

  explicit CudaTrainer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaTrainer>(info) {
    guarded(info.Env(), [&] {
      FT_CHECK(info.Length() >= 6 && info[0].IsObject() && info[1].IsObject(), "CudaTrainer(config, base, rank, scale, maxBatch, maxSeqLen[, precision])");
      const Napi::Object c = info[0].As<Napi::Object>();
      cfg_ = Qwen3Config{intField(c, "hidden"), intField(c, "intermediate"), intField(c, "heads"), intField(c, "kvHeads"), intField(c, "headDim"),
                         intField(c, "layers"), intField(c, "vocab"), c.Get("ropeTheta").As<Napi::Number>().FloatValue(),
                         c.Get("rmsEps").As<Napi::Number>().FloatValue()};
      FT_CHECK(cfg_.layers > 0 && cfg_.hidden > 0 && cfg_.vocab > 0 && cfg_.kvHeads > 0 && cfg_.heads % cfg_.kvHeads == 0, "CudaTrainer: bad config");
      const std::size_t C = cfg_.hidden, V = cfg_.vocab, D = cfg_.headDim;
      const Napi::Object base = info[1].As<Napi::Object>();
      const float* embed = f32(base.Get("embed"), V * C, "base.embed");
      const float* finalNorm = f32(base.Get("finalNorm"), C, "base.finalNorm");
      const Napi::Value lv = base.Get("layers");
      FT_CHECK(lv.IsArray() && lv.As<Napi::Array>().Length() == static_cast<std::uint32_t>(cfg_.layers), "base.layers: expected ", cfg_.layers,
               " entries");
      const Napi::Array layers = lv.As<Napi::Array>();
      std::vector<cuda::HostLayer> host(cfg_.layers);
      for (int l = 0; l < cfg_.layers; ++l) {
        const Napi::Object lo = layers.Get(l).As<Napi::Object>();
        const std::string p = "base.layers[" + std::to_string(l) + "].";
        host[l].inputNorm = f32(lo.Get("inputNorm"), C, p + "inputNorm");
        host[l].postNorm = f32(lo.Get("postNorm"), C, p + "postNorm");
        host[l].qNorm = f32(lo.Get("qNorm"), D, p + "qNorm");
        host[l].kNorm = f32(lo.Get("kNorm"), D, p + "kNorm");
        const Napi::Value codes = lo.Get("codes"), absmax = lo.Get("absmax");
        FT_CHECK(codes.IsArray() && absmax.IsArray() && codes.As<Napi::Array>().Length() == NPROJ && absmax.As<Napi::Array>().Length() == NPROJ, p,
                 "codes and absmax: expected 7 entries each");
        for (int j = 0; j < NPROJ; ++j) {
          const std::size_t n = projCount(j);
          host[l].codes[j] = typed<std::uint8_t>(codes.As<Napi::Array>().Get(j), napi_uint8_array, "Uint8Array", nf4::codeBytes(n),
                                                 p + "codes[" + std::to_string(j) + "]");
          host[l].absmax[j] = f32(absmax.As<Napi::Array>().Get(j), nf4::absmaxCount(n), p + "absmax[" + std::to_string(j) + "]");
        }
      }
      rank_ = static_cast<int>(number(info, 2, "rank"));
      const float scale = static_cast<float>(number(info, 3, "scale"));
      const int maxBatch = static_cast<int>(number(info, 4, "maxBatch")), maxSeqLen = static_cast<int>(number(info, 5, "maxSeqLen"));
      auto precision = cuda::Trainer::Precision::fp16;
      if (info.Length() >= 7 && !info[6].IsUndefined()) {
        const std::string p = info[6].IsString() ? info[6].As<Napi::String>().Utf8Value() : std::string("(not a string)");
        FT_CHECK(p == "fp16" || p == "bf16", "CudaTrainer: precision ", p, ", expected \"fp16\" or \"bf16\"");
        if (p == "bf16") precision = cuda::Trainer::Precision::bf16;
      }
      trainer_ = std::make_unique<cuda::Trainer>(cfg_, embed, finalNorm, host, rank_, scale, maxBatch, maxSeqLen, precision);
    });
  }

 private:
  Qwen3Config cfg_{};
  int rank_ = 0;
  std::unique_ptr<cuda::Trainer> trainer_;

  std::size_t projCount(int j) const { return static_cast<std::size_t>(projIn(cfg_, j)) * projOut(cfg_, j); }

  cuda::Trainer& live() {
    FT_CHECK(trainer_ != nullptr, "CudaTrainer: used after close()");
    return *trainer_;
  }
  Napi::Array projections(const Napi::CallbackInfo& info, const char* what) {
    const std::uint32_t count = static_cast<std::uint32_t>(cfg_.layers) * NPROJ;
    FT_CHECK(info.Length() > 0 && info[0].IsArray() && info[0].As<Napi::Array>().Length() == count, "CudaTrainer.", what,
             ": expected an array of layers * 7 = ", count, " entries");
    return info[0].As<Napi::Array>();
  }

  Napi::Value SetLora(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] {
      cuda::Trainer& t = live();
      const Napi::Array proj = projections(info, "setLora");
      for (std::uint32_t i = 0; i < proj.Length(); ++i) {
        const int j = static_cast<int>(i % NPROJ);
        const std::size_t na = static_cast<std::size_t>(rank_) * projIn(cfg_, j), nb = static_cast<std::size_t>(projOut(cfg_, j)) * rank_;
        const Napi::Value v = proj.Get(i);
        if (v.IsNull() || v.IsUndefined()) {
          t.disableLora(static_cast<int>(i));
        } else {
          const Napi::Object o = v.As<Napi::Object>();
          const std::string p = "setLora: proj[" + std::to_string(i) + "].";
          t.setLora(static_cast<int>(i), f32(o.Get("A"), na, p + "A"), f32(o.Get("B"), nb, p + "B"));
        }
      }
      t.syncLora();
      return info.Env().Undefined();
    });
  }

  Napi::Value ZeroGrads(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] {
      live().zeroGrads();
      return info.Env().Undefined();
    });
  }

  Napi::Value Step(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      cuda::Trainer& t = live();
      const int batch = static_cast<int>(number(info, 2, "batch")), seqLen = static_cast<int>(number(info, 3, "seqLen"));
      FT_CHECK(batch > 0 && seqLen > 0, "CudaTrainer.step: batch ", batch, " x seqLen ", seqLen);
      const std::size_t n = static_cast<std::size_t>(batch) * seqLen;
      const std::int32_t* ids = typed<std::int32_t>(info[0], napi_int32_array, "Int32Array", n, "step: ids");
      const std::uint8_t* mask = typed<std::uint8_t>(info[1], napi_uint8_array, "Uint8Array", n, "step: mask");
      FT_CHECK(info.Length() > 4 && info[4].IsBoolean(), "CudaTrainer.step: backward (argument 5) must be a boolean");
      const bool backward = info[4].As<Napi::Boolean>().Value();
      const float lossScale = static_cast<float>(number(info, 5, "lossScale"));
      const float dropout = static_cast<float>(number(info, 6, "dropout"));
      const double seed = number(info, 7, "seed");
      FT_CHECK(std::trunc(seed) == seed && std::fabs(seed) < 9.0e15, "CudaTrainer.step: seed ", seed, " must be an integer of magnitude below 2^53");
      // as qwen3ForwardBackward reads lora.seed (Int64Value, then unsigned): the same masks
      t.setDropout(dropout, static_cast<std::uint64_t>(static_cast<std::int64_t>(seed)));
      int counted = 0;
      const float loss = t.step(ids, mask, batch, seqLen, backward, lossScale, &counted);
      Napi::Object res = Napi::Object::New(info.Env());
      res.Set("loss", loss);
      res.Set("counted", counted);
      return res;
    });
  }

  Napi::Value GetGrads(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] {
      cuda::Trainer& t = live();
      const float factor = static_cast<float>(number(info, 1, "factor"));
      eachProjection(info, "getGrads", [&](int i, const Napi::Object& o, std::size_t na, std::size_t nb, const std::string& p) {
        t.getGrads(i, f32w(o.Get("dA"), na, p + "dA"), f32w(o.Get("dB"), nb, p + "dB"), factor);
      });
      return info.Env().Undefined();
    });
  }

  /** One tensor's AdamW state object (native/index.ts AdamW8bitState) as host pointers. */
  static cuda::Trainer::HostState hostState(const Napi::Value& v, std::size_t n, const std::string& what) {
    FT_CHECK(v.IsObject(), what, ": expected an AdamW state object");
    const Napi::Object o = v.As<Napi::Object>();
    const Napi::Value kind = o.Get("kind");
    cuda::Trainer::HostState s;
    if (kind.IsString() && kind.As<Napi::String>().Utf8Value() == "8bit") {
      const std::size_t blocks = adamw8bit::absmaxCount(n);
      s.mCodes = typed<std::uint8_t>(o.Get("mCodes"), napi_uint8_array, "Uint8Array", n, what + ".mCodes");
      s.vCodes = typed<std::uint8_t>(o.Get("vCodes"), napi_uint8_array, "Uint8Array", n, what + ".vCodes");
      s.mAbsmax = f32w(o.Get("mAbsmax"), blocks, what + ".mAbsmax");
      s.vAbsmax = f32w(o.Get("vAbsmax"), blocks, what + ".vAbsmax");
    } else {
      FT_CHECK(kind.IsString() && kind.As<Napi::String>().Utf8Value() == "fp32", what, ".kind: expected \"8bit\" or \"fp32\"");
      s.m = f32w(o.Get("m"), n, what + ".m");
      s.v = f32w(o.Get("v"), n, what + ".v");
    }
    return s;
  }

  /** For each adapted entry of proj (layers * 7, null skipped): f(index, entry object, nA, nB, label). */
  template <typename F>
  void eachProjection(const Napi::CallbackInfo& info, const char* what, F&& f) {
    const Napi::Array proj = projections(info, what);
    for (std::uint32_t i = 0; i < proj.Length(); ++i) {
      const Napi::Value v = proj.Get(i);
      if (v.IsNull() || v.IsUndefined()) continue;
      FT_CHECK(v.IsObject(), "CudaTrainer.", what, ": proj[", i, "] must be an object or null");
      const int j = static_cast<int>(i % NPROJ);
      f(static_cast<int>(i), v.As<Napi::Object>(), static_cast<std::size_t>(rank_) * projIn(cfg_, j), static_cast<std::size_t>(projOut(cfg_, j)) * rank_,
        std::string(what) + ": proj[" + std::to_string(i) + "].");
    }
  }

  /** The optimizer state of every adapted projection's A and B, to the device or back. */
  Napi::Value optimizerState(const Napi::CallbackInfo& info, bool toDevice) {
    return guarded(info.Env(), [&] {
      cuda::Trainer& t = live();
      eachProjection(info, toDevice ? "setOptimizerState" : "getOptimizerState",
                     [&](int i, const Napi::Object& o, std::size_t na, std::size_t nb, const std::string& p) {
                       for (const bool b : {false, true}) {
                         const cuda::Trainer::HostState s = hostState(o.Get(b ? "B" : "A"), b ? nb : na, p + (b ? "B" : "A"));
                         if (toDevice) t.setOptimizerState(i, b, s);
                         else t.getOptimizerState(i, b, s);
                       }
                     });
      return info.Env().Undefined();
    });
  }
  Napi::Value SetOptimizerState(const Napi::CallbackInfo& info) { return optimizerState(info, true); }
  Napi::Value GetOptimizerState(const Napi::CallbackInfo& info) { return optimizerState(info, false); }

  Napi::Value GetLora(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] {
      cuda::Trainer& t = live();
      eachProjection(info, "getLora", [&](int i, const Napi::Object& o, std::size_t na, std::size_t nb, const std::string& p) {
        t.getLora(i, f32w(o.Get("A"), na, p + "A"), f32w(o.Get("B"), nb, p + "B"));
      });
      return info.Env().Undefined();
    });
  }

  Napi::Value UnscaleGrads(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const float factor = static_cast<float>(number(info, 0, "factor")), divisor = static_cast<float>(number(info, 1, "divisor"));
      FT_CHECK(std::isfinite(factor) && factor > 0.f && std::isfinite(divisor) && divisor > 0.f, "CudaTrainer.unscaleGrads: factor ", factor,
               " and divisor ", divisor, ", expected positive numbers");
      return Napi::Number::New(info.Env(), live().unscaleGrads(factor, divisor));
    });
  }

  Napi::Value OptimizerStep(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&] {
      const double clip = number(info, 0, "clip");
      FT_CHECK(info.Length() > 1 && info[1].IsObject(), "CudaTrainer.optimizerStep: hyper (argument 2) must be an object");
      const Napi::Object h = info[1].As<Napi::Object>();
      const auto field = [&](const char* key) {
        const Napi::Value v = h.Get(key);
        FT_CHECK(v.IsNumber(), "CudaTrainer.optimizerStep: hyper.", key, " must be a number");
        return v.As<Napi::Number>().DoubleValue();
      };
      const adamw::Hyper hyper{static_cast<float>(field("lr")), static_cast<float>(field("beta1")), static_cast<float>(field("beta2")),
                               static_cast<float>(field("eps")), static_cast<float>(field("weightDecay")), static_cast<std::int64_t>(field("step"))};
      live().optimizerStep(clip, hyper);
      return info.Env().Undefined();
    });
  }

  Napi::Value Bytes(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), [&]() -> Napi::Value {
      const cuda::Trainer::Bytes b = live().bytes();
      Napi::Object o = Napi::Object::New(info.Env());
      o.Set("weights", static_cast<double>(b.weights));
      o.Set("lora", static_cast<double>(b.lora));
      o.Set("activations", static_cast<double>(b.activations));
      o.Set("head", static_cast<double>(b.head));
      o.Set("workspace", static_cast<double>(b.workspace));
      o.Set("optimizer", static_cast<double>(b.optimizer));
      return o;
    });
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    trainer_.reset();
    return info.Env().Undefined();
  }
};

Napi::Value Devices(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    int count = 0;
    FT_CUDA(cudaGetDeviceCount(&count));
    Napi::Array out = Napi::Array::New(info.Env());
    for (int i = 0; i < count; ++i) {
      cudaDeviceProp prop{};
      FT_CUDA(cudaGetDeviceProperties(&prop, i));
      std::size_t freeBytes = 0, totalBytes = 0;
      FT_CUDA(cudaSetDevice(i));
      FT_CUDA(cudaMemGetInfo(&freeBytes, &totalBytes));
      Napi::Object d = Napi::Object::New(info.Env());
      d.Set("index", i);
      d.Set("name", std::string(prop.name));
      d.Set("computeCapability", std::to_string(prop.major) + "." + std::to_string(prop.minor));
      d.Set("totalBytes", static_cast<double>(totalBytes));
      d.Set("freeBytes", static_cast<double>(freeBytes));
      out.Set(static_cast<std::uint32_t>(i), d);
    }
    if (count > 0) FT_CUDA(cudaSetDevice(0));
    return out;
  });
}

}  // namespace

void RegisterCuda(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaDevices", Napi::Function::New(env, Devices));
  exports.Set("CudaTrainer", CudaTrainer::Define(env));
}

}  // namespace ft
