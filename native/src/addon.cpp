// The Node-API boundary of the native core: registers ftcore.node's functions.
//
// Each binding reads its arguments through js::Args (typed arrays are used in place, never
// copied), checks every shape against the kernel's contract, and calls the kernel. Outputs are
// caller-allocated typed arrays (native/index.ts allocates them), so C++ never allocates JS
// memory and a caller can reuse buffers across calls.
//
// Exports:
//   napiVersion, nf4Codebook (Float32Array[16]), blocks { nf4, doubleQuant, adamw8bit },
//   adamw8bitMinQuantized, dynamicMap(signed) -> Float32Array[256],
//   adamwStep, adamw8bitInit, ggufQuantize, ggufDequantize (gguf_quant.h),
//   kernel    { nf4Quantize, nf4Dequantize, doubleQuantize, doubleDequantize, adamw8bitStep,
//               dynamicEncode },
//   reference { the same six, bound to the scalar references },
//   qwen3* (addon_qwen3.cpp), and where nvcc built the CUDA backend: cudaDevices, CudaTrainer
//   (addon_cuda.cpp).
//
// Errors: ft::Error (a bad argument) becomes a JS Error with code "FT_NATIVE_CHECK"; any other
// C++ exception is a bug in the core and becomes a JS Error with code "FT_NATIVE_BUG". This is
// the only place where C++ errors cross into JS.
#include <napi.h>

#include <cmath>
#include <exception>

#include "adamw.h"
#include "adamw8bit.h"
#include "check.h"
#include "double_quant.h"
#include "dynamic_map.h"
#include "gguf_quant.h"
#include "js_args.h"
#include "nf4.h"

namespace ft {
namespace {

using Binding = Napi::Value (*)(const Napi::CallbackInfo&);

Napi::Error jsError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Value().Set("code", Napi::String::New(env, code));
  return error;
}

template <Binding F>
Napi::Value boundary(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const Error& e) {
    throw jsError(info.Env(), "FT_NATIVE_CHECK", e.what());
  } catch (const std::exception& e) {
    throw jsError(info.Env(), "FT_NATIVE_BUG", std::string("native core bug: ") + e.what());
  }
}

// ---- NF4 --------------------------------------------------------------------------------------

using Nf4QuantizeFn = void (*)(const float*, std::size_t, std::uint8_t*, float*);
using Nf4DequantizeFn = void (*)(const std::uint8_t*, const float*, std::size_t, float*);

// (x: Float32Array[n], codes: Uint8Array[ceil(n/2)], absmax: Float32Array[ceil(n/64)]) -> undefined
template <Nf4QuantizeFn Quantize>
Napi::Value nf4Quantize(const Napi::CallbackInfo& info) {
  js::Args args(info, "nf4Quantize");
  const auto x = args.f32(0, "x");
  const auto codes = args.u8(1, "codes");
  const auto absmax = args.f32(2, "absmax");
  args.expectLength(codes, nf4::codeBytes(x.size), "ceil(n / 2) for n = x.length");
  args.expectLength(absmax, nf4::absmaxCount(x.size), "ceil(n / 64) for n = x.length");
  args.expectDisjoint(codes, x);
  args.expectDisjoint(absmax, x);
  args.expectDisjoint(absmax, codes);
  Quantize(x.data, x.size, codes.data, absmax.data);
  return info.Env().Undefined();
}

// (codes: Uint8Array[ceil(n/2)], absmax: Float32Array[ceil(n/64)], out: Float32Array[n]) -> undefined
template <Nf4DequantizeFn Dequantize>
Napi::Value nf4Dequantize(const Napi::CallbackInfo& info) {
  js::Args args(info, "nf4Dequantize");
  const auto codes = args.u8(0, "codes");
  const auto absmax = args.f32(1, "absmax");
  const auto out = args.f32(2, "out");
  args.expectLength(codes, nf4::codeBytes(out.size), "ceil(n / 2) for n = out.length");
  args.expectLength(absmax, nf4::absmaxCount(out.size), "ceil(n / 64) for n = out.length");
  args.expectDisjoint(out, codes);
  args.expectDisjoint(out, absmax);
  Dequantize(codes.data, absmax.data, out.size, out.data);
  return info.Env().Undefined();
}

// ---- double quantization ------------------------------------------------------------------------

using DqQuantizeFn = float (*)(const float*, std::size_t, std::uint8_t*, float*);
using DqDequantizeFn = void (*)(const std::uint8_t*, const float*, float, std::size_t, float*);

// (absmax: Float32Array[n], q: Uint8Array[n], scales: Float32Array[ceil(n/256)]) -> offset
template <DqQuantizeFn Quantize>
Napi::Value doubleQuantize(const Napi::CallbackInfo& info) {
  js::Args args(info, "doubleQuantize");
  const auto absmax = args.f32(0, "absmax");
  const auto q = args.u8(1, "q");
  const auto scales = args.f32(2, "scales");
  args.expectLength(q, absmax.size, "one code per absmax value");
  args.expectLength(scales, dq::scaleCount(absmax.size), "ceil(n / 256) for n = absmax.length");
  args.expectDisjoint(q, absmax);
  args.expectDisjoint(scales, absmax);
  args.expectDisjoint(scales, q);
  return Napi::Number::New(info.Env(), Quantize(absmax.data, absmax.size, q.data, scales.data));
}

// (q: Uint8Array[n], scales: Float32Array[ceil(n/256)], offset: number, out: Float32Array[n]) -> undefined
template <DqDequantizeFn Dequantize>
Napi::Value doubleDequantize(const Napi::CallbackInfo& info) {
  js::Args args(info, "doubleDequantize");
  const auto q = args.u8(0, "q");
  const auto scales = args.f32(1, "scales");
  const double offset = args.number(2, "offset");
  const auto out = args.f32(3, "out");
  FT_CHECK(std::isfinite(offset), "doubleDequantize: offset is ", offset, ", expected a finite number");
  args.expectLength(q, out.size, "one code per output value");
  args.expectLength(scales, dq::scaleCount(out.size), "ceil(n / 256) for n = out.length");
  args.expectDisjoint(out, q);
  args.expectDisjoint(out, scales);
  Dequantize(q.data, scales.data, static_cast<float>(offset), out.size, out.data);
  return info.Env().Undefined();
}

// ---- dynamic maps -------------------------------------------------------------------------------

using EncodeFn = std::uint8_t (*)(const dynmap::Map&, float);

// (signed: boolean, x: Float32Array[n], codes: Uint8Array[n]) -> undefined; codes of the nearest
// map values (no scaling: x is used as it is)
template <EncodeFn Encode>
Napi::Value dynamicEncode(const Napi::CallbackInfo& info) {
  js::Args args(info, "dynamicEncode");
  const dynmap::Map& map = args.boolean(0, "signed") ? dynmap::signedMap() : dynmap::unsignedMap();
  const auto x = args.f32(1, "x");
  const auto codes = args.u8(2, "codes");
  args.expectLength(codes, x.size, "one code per value");
  args.expectDisjoint(codes, x);
  for (std::size_t i = 0; i < x.size; ++i) codes.data[i] = Encode(map, x.data[i]);
  return info.Env().Undefined();
}

// ---- AdamW ------------------------------------------------------------------------------------

// (param: Float32Array[n], grad: Float32Array[n], m: Float32Array[n], v: Float32Array[n], hyper) -> undefined
Napi::Value adamwStep(const Napi::CallbackInfo& info) {
  js::Args args(info, "adamwStep");
  const auto param = args.f32(0, "param");
  const auto grad = args.f32(1, "grad");
  const auto m = args.f32(2, "m");
  const auto v = args.f32(3, "v");
  const adamw::Hyper hyper = args.hyper(4);
  args.expectLength(grad, param.size, "one gradient per parameter");
  args.expectLength(m, param.size, "one first moment per parameter");
  args.expectLength(v, param.size, "one second moment per parameter");
  args.expectDisjoint(param, grad);
  args.expectDisjoint(m, param);
  args.expectDisjoint(m, grad);
  args.expectDisjoint(v, param);
  args.expectDisjoint(v, grad);
  args.expectDisjoint(v, m);
  adamw::step(param.data, grad.data, m.data, v.data, param.size, hyper);
  return info.Env().Undefined();
}

struct Adamw8bitState {
  js::View<std::uint8_t> mCodes, vCodes;
  js::View<float> mAbsmax, vAbsmax;
};

/** The four state buffers starting at argument `first`, checked against n and each other. */
Adamw8bitState adamw8bitState(const js::Args& args, std::size_t first, std::size_t n) {
  Adamw8bitState s{args.u8(first, "mCodes"), args.u8(first + 1, "vCodes"), args.f32(first + 2, "mAbsmax"),
                   args.f32(first + 3, "vAbsmax")};
  args.expectLength(s.mCodes, n, "one code per parameter");
  args.expectLength(s.vCodes, n, "one code per parameter");
  args.expectLength(s.mAbsmax, adamw8bit::absmaxCount(n), "ceil(n / 256)");
  args.expectLength(s.vAbsmax, adamw8bit::absmaxCount(n), "ceil(n / 256)");
  args.expectDisjoint(s.vCodes, s.mCodes);
  args.expectDisjoint(s.vAbsmax, s.mAbsmax);
  return s;
}

// (mCodes: Uint8Array[n], vCodes: Uint8Array[n], mAbsmax: Float32Array[ceil(n/256)], vAbsmax: same) -> undefined
Napi::Value adamw8bitInit(const Napi::CallbackInfo& info) {
  js::Args args(info, "adamw8bitInit");
  const std::size_t n = args.u8(0, "mCodes").size;
  const Adamw8bitState s = adamw8bitState(args, 0, n);
  adamw8bit::init(s.mCodes.data, s.vCodes.data, s.mAbsmax.data, s.vAbsmax.data, n);
  return info.Env().Undefined();
}

using Adamw8bitStepFn = void (*)(float*, const float*, std::uint8_t*, std::uint8_t*, float*, float*, std::size_t,
                                 const adamw::Hyper&);

// (param: Float32Array[n], grad: Float32Array[n], mCodes, vCodes, mAbsmax, vAbsmax, hyper) -> undefined
template <Adamw8bitStepFn Step>
Napi::Value adamw8bitStep(const Napi::CallbackInfo& info) {
  js::Args args(info, "adamw8bitStep");
  const auto param = args.f32(0, "param");
  const auto grad = args.f32(1, "grad");
  const Adamw8bitState s = adamw8bitState(args, 2, param.size);
  const adamw::Hyper hyper = args.hyper(6);
  args.expectLength(grad, param.size, "one gradient per parameter");
  args.expectDisjoint(param, grad);
  for (const auto* absmax : {&s.mAbsmax, &s.vAbsmax}) {
    args.expectDisjoint(*absmax, param);
    args.expectDisjoint(*absmax, grad);
  }
  for (const auto* codes : {&s.mCodes, &s.vCodes}) {
    args.expectDisjoint(*codes, param);
    args.expectDisjoint(*codes, grad);
    args.expectDisjoint(*codes, s.mAbsmax);
    args.expectDisjoint(*codes, s.vAbsmax);
  }
  Step(param.data, grad.data, s.mCodes.data, s.vCodes.data, s.mAbsmax.data, s.vAbsmax.data, param.size, hyper);
  return info.Env().Undefined();
}

// ---- GGUF quantizers ---------------------------------------------------------------------------

gguf::Type ggufType(const js::Args& args, std::size_t index) {
  const double t = args.number(index, "type");
  FT_CHECK(t >= 0 && t == std::floor(t) && gguf::isKnown(static_cast<std::uint32_t>(t)), "type ", t,
           " is not one of the GGUF types the core writes (F32 0, F16 1, Q8_0 8, Q4_K 12, Q5_K 13, Q6_K 14)");
  return static_cast<gguf::Type>(static_cast<std::uint32_t>(t));
}

// (type: number, x: Float32Array[n], out: Uint8Array[rowBytes(type, n)]) -> undefined
Napi::Value ggufQuantize(const Napi::CallbackInfo& info) {
  js::Args args(info, "ggufQuantize");
  const gguf::Type t = ggufType(args, 0);
  const auto x = args.f32(1, "x");
  const auto out = args.u8(2, "out");
  args.expectLength(out, gguf::rowBytes(t, x.size), "the type's bytes for x.length values");
  args.expectDisjoint(out, x);
  gguf::quantize(t, x.data, x.size, out.data);
  return info.Env().Undefined();
}

// (type: number, q: Uint8Array[rowBytes(type, n)], out: Float32Array[n]) -> undefined
Napi::Value ggufDequantize(const Napi::CallbackInfo& info) {
  js::Args args(info, "ggufDequantize");
  const gguf::Type t = ggufType(args, 0);
  const auto q = args.u8(1, "q");
  const auto out = args.f32(2, "out");
  args.expectLength(q, gguf::rowBytes(t, out.size), "the type's bytes for out.length values");
  args.expectDisjoint(out, q);
  gguf::dequantize(t, q.data, out.size, out.data);
  return info.Env().Undefined();
}

// ---- constants ----------------------------------------------------------------------------------

Napi::Float32Array floats(Napi::Env env, const float* values, std::size_t n) {
  Napi::Float32Array array = Napi::Float32Array::New(env, n);
  for (std::size_t i = 0; i < n; ++i) array[i] = values[i];
  return array;
}

// (signed: boolean) -> Float32Array[256], a copy of the map
Napi::Value dynamicMap(const Napi::CallbackInfo& info) {
  js::Args args(info, "dynamicMap");
  const dynmap::Map& map = args.boolean(0, "signed") ? dynmap::signedMap() : dynmap::unsignedMap();
  return floats(info.Env(), map.value, 256);
}

template <Binding F>
void add(Napi::Env env, Napi::Object target, const char* name) {
  target.Set(name, Napi::Function::New(env, boundary<F>, name));
}

}  // namespace

void RegisterQwen3(Napi::Env env, Napi::Object exports);  // addon_qwen3.cpp
#ifdef FT_HAVE_CUDA
void RegisterCuda(Napi::Env env, Napi::Object exports);  // addon_cuda.cpp (built when nvcc is found)
#endif

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  exports.Set("nf4Codebook", floats(env, nf4::kCodebook, 16));
  Napi::Object blocks = Napi::Object::New(env);
  blocks.Set("nf4", Napi::Number::New(env, static_cast<double>(nf4::kBlock)));
  blocks.Set("doubleQuant", Napi::Number::New(env, static_cast<double>(dq::kBlock)));
  blocks.Set("adamw8bit", Napi::Number::New(env, static_cast<double>(adamw8bit::kBlock)));
  exports.Set("blocks", blocks);
  exports.Set("adamw8bitMinQuantized", Napi::Number::New(env, static_cast<double>(adamw8bit::kMinQuantized)));

  add<dynamicMap>(env, exports, "dynamicMap");
  add<adamwStep>(env, exports, "adamwStep");
  add<adamw8bitInit>(env, exports, "adamw8bitInit");
  add<ggufQuantize>(env, exports, "ggufQuantize");
  add<ggufDequantize>(env, exports, "ggufDequantize");

  Napi::Object kernel = Napi::Object::New(env);
  add<nf4Quantize<nf4::quantize>>(env, kernel, "nf4Quantize");
  add<nf4Dequantize<nf4::dequantize>>(env, kernel, "nf4Dequantize");
  add<doubleQuantize<dq::quantize>>(env, kernel, "doubleQuantize");
  add<doubleDequantize<dq::dequantize>>(env, kernel, "doubleDequantize");
  add<adamw8bitStep<adamw8bit::step>>(env, kernel, "adamw8bitStep");
  add<dynamicEncode<dynmap::encode>>(env, kernel, "dynamicEncode");
  exports.Set("kernel", kernel);

  Napi::Object reference = Napi::Object::New(env);
  add<nf4Quantize<nf4::quantize_ref>>(env, reference, "nf4Quantize");
  add<nf4Dequantize<nf4::dequantize_ref>>(env, reference, "nf4Dequantize");
  add<doubleQuantize<dq::quantize_ref>>(env, reference, "doubleQuantize");
  add<doubleDequantize<dq::dequantize_ref>>(env, reference, "doubleDequantize");
  add<adamw8bitStep<adamw8bit::step_ref>>(env, reference, "adamw8bitStep");
  add<dynamicEncode<dynmap::encode_ref>>(env, reference, "dynamicEncode");
  exports.Set("reference", reference);
  RegisterQwen3(env, exports);
#ifdef FT_HAVE_CUDA
  RegisterCuda(env, exports);
#endif
  return exports;
}

}  // namespace
}  // namespace ft

// NODE_API_MODULE pastes its second argument into a name, so it must be a plain identifier.
static Napi::Object InitFtcore(Napi::Env env, Napi::Object exports) { return ft::Init(env, exports); }

NODE_API_MODULE(ftcore, InitFtcore)
