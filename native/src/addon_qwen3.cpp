// addon_qwen3.cpp: the JS face of the Qwen3 forward/backward (qwen3.h).
//
//   qwen3ForwardBackward(config, weights, lora, ids, mask, batch, seqLen, backward, logits?)
//     config   { hidden, intermediate, heads, kvHeads, headDim, layers, vocab, ropeTheta, rmsEps }
//     weights  { embed, finalNorm, layers: [{ inputNorm, postNorm, qNorm, kNorm, w: [q, k, v, o, gate, up, down] }] }  (Float32Array each)
//     lora     { rank, scale, proj: [{ A, B, dA, dB } | null] }  (layers * 7, in the order q k v o gate up down)
//     ids      Int32Array [batch * seqLen];  mask Uint8Array [batch * seqLen]
//     logits   optional Float32Array [batch * seqLen * vocab]
//   → { loss, counted }
//   qwen3ForwardBackwardRef(...)  the same through the plain scalar reference loops (tests)
//   qwen3SetThreads(n) → n in use  (n <= 0: FT_THREADS or the core count; 0 just asks)
//   qwen3SetIsa("scalar" | "avx2" | "avx512" | "best") → the path in use (never above the CPU's)
//   qwen3Simd { gemm, gemmRef, dot, dotRef, axpy, axpyRef, exp, expRef }  simd.h's primitives (tests)
// Every array's length is checked against the config here, so the C++ below
// can trust its shapes.
#include <napi.h>

#include <string>

#include "qwen3.h"
#include "simd.h"
#include "threads.h"

namespace {

const float* f32(const Napi::Value& v, size_t expected, const std::string& what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(v.Env(), what + ": expected a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() != expected)
    throw Napi::RangeError::New(v.Env(), what + ": expected " + std::to_string(expected) + " elements, got " + std::to_string(a.ElementLength()));
  return a.Data();
}

int intOf(const Napi::Object& o, const char* key) {
  auto v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("config.") + key + ": expected a number");
  return v.As<Napi::Number>().Int32Value();
}

// config, weights and lora from arguments 0, 1, 2; LoRA gradients (dA, dB) only when `grads`
struct Model {
  ft::Qwen3Config cfg{};
  ft::Qwen3Weights w;
  ft::Lora lora;
};

Model parseModel(const Napi::CallbackInfo& info, bool grads) {
  Napi::Env env = info.Env();
  Model m;
  auto c = info[0].As<Napi::Object>();
  m.cfg = ft::Qwen3Config{intOf(c, "hidden"), intOf(c, "intermediate"), intOf(c, "heads"), intOf(c, "kvHeads"), intOf(c, "headDim"),
                          intOf(c, "layers"), intOf(c, "vocab"), c.Get("ropeTheta").As<Napi::Number>().FloatValue(),
                          c.Get("rmsEps").As<Napi::Number>().FloatValue()};
  ft::Qwen3Config& cfg = m.cfg;
  cfg.checkpointing = c.Has("activationCheckpointing") && c.Get("activationCheckpointing").ToBoolean().Value();
  if (cfg.heads % cfg.kvHeads != 0 || cfg.headDim % 2 != 0) throw Napi::RangeError::New(env, "config: heads must be a multiple of kvHeads and headDim even");
  const size_t C = cfg.hidden;
  size_t in[ft::NPROJ], out[ft::NPROJ];
  for (int j = 0; j < ft::NPROJ; j++) in[j] = (size_t)ft::projIn(cfg, j), out[j] = (size_t)ft::projOut(cfg, j);
  auto wo = info[1].As<Napi::Object>();
  ft::Qwen3Weights& w = m.w;
  w.embed = f32(wo.Get("embed"), (size_t)cfg.vocab * C, "weights.embed");
  w.finalNorm = f32(wo.Get("finalNorm"), C, "weights.finalNorm");
  auto layers = wo.Get("layers").As<Napi::Array>();
  if ((int)layers.Length() != cfg.layers) throw Napi::RangeError::New(env, "weights.layers: expected config.layers entries");
  for (int l = 0; l < cfg.layers; l++) {
    auto lo = layers.Get(l).As<Napi::Object>();
    const std::string p = "weights.layers[" + std::to_string(l) + "].";
    ft::LayerWeights lw{};
    lw.inputNorm = f32(lo.Get("inputNorm"), C, p + "inputNorm");
    lw.postNorm = f32(lo.Get("postNorm"), C, p + "postNorm");
    lw.qNorm = f32(lo.Get("qNorm"), cfg.headDim, p + "qNorm");
    lw.kNorm = f32(lo.Get("kNorm"), cfg.headDim, p + "kNorm");
    auto ws = lo.Get("w").As<Napi::Array>();
    for (int j = 0; j < ft::NPROJ; j++) lw.w[j] = f32(ws.Get(j), in[j] * out[j], p + "w[" + std::to_string(j) + "]");
    w.layer.push_back(lw);
  }
  auto lo = info[2].As<Napi::Object>();
  ft::Lora& lora = m.lora;
  lora.rank = intOf(lo, "rank");
  lora.scale = lo.Get("scale").As<Napi::Number>().FloatValue();
  if (lo.Has("dropout") && lo.Get("dropout").IsNumber()) lora.dropout = lo.Get("dropout").As<Napi::Number>().FloatValue();
  if (lora.dropout < 0.f || lora.dropout >= 1.f) throw Napi::RangeError::New(env, "lora.dropout: expected 0 <= p < 1");
  if (lo.Has("seed") && lo.Get("seed").IsNumber()) lora.seed = static_cast<uint64_t>(lo.Get("seed").As<Napi::Number>().Int64Value());
  auto proj = lo.Get("proj").As<Napi::Array>();
  if (proj.Length() != (size_t)cfg.layers * ft::NPROJ) throw Napi::RangeError::New(env, "lora.proj: expected layers * 7 entries");
  const size_t r = lora.rank;
  for (uint32_t i = 0; i < proj.Length(); i++) {
    ft::LoraPair lp;
    auto v = proj.Get(i);
    if (!v.IsNull() && !v.IsUndefined()) {
      auto po = v.As<Napi::Object>();
      const int j = i % ft::NPROJ;
      const std::string p = "lora.proj[" + std::to_string(i) + "].";
      lp.A = f32(po.Get("A"), r * in[j], p + "A");
      lp.B = f32(po.Get("B"), out[j] * r, p + "B");
      if (grads) {
        lp.dA = const_cast<float*>(f32(po.Get("dA"), r * in[j], p + "dA"));
        lp.dB = const_cast<float*>(f32(po.Get("dB"), out[j] * r, p + "dB"));
      }
    }
    lora.proj.push_back(lp);
  }
  return m;
}

template <float (*Fn)(const ft::Qwen3Config&, const ft::Qwen3Weights&, ft::Lora&, const int32_t*, const uint8_t*, int, int, bool, float*, int*)>
Napi::Value ForwardBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Model m = parseModel(info, true);
  const ft::Qwen3Config& cfg = m.cfg;
  const int batch = info[5].As<Napi::Number>().Int32Value(), seqLen = info[6].As<Napi::Number>().Int32Value();
  const size_t N = (size_t)batch * seqLen;
  if (!info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array || info[3].As<Napi::Int32Array>().ElementLength() != N)
    throw Napi::TypeError::New(env, "ids: expected an Int32Array of batch * seqLen");
  if (!info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array || info[4].As<Napi::Uint8Array>().ElementLength() != N)
    throw Napi::TypeError::New(env, "mask: expected a Uint8Array of batch * seqLen");
  const int32_t* ids = info[3].As<Napi::Int32Array>().Data();
  for (size_t i = 0; i < N; i++)
    if (ids[i] < 0 || ids[i] >= cfg.vocab) throw Napi::RangeError::New(env, "ids[" + std::to_string(i) + "] = " + std::to_string(ids[i]) + " is outside the vocabulary");
  float* logits = nullptr;
  if (info.Length() > 8 && !info[8].IsUndefined() && !info[8].IsNull()) logits = const_cast<float*>(f32(info[8], N * cfg.vocab, "logits"));
  int counted = 0;
  const float loss = Fn(cfg, m.w, m.lora, ids, info[4].As<Napi::Uint8Array>().Data(), batch, seqLen, info[7].As<Napi::Boolean>().Value(), logits, &counted);
  auto res = Napi::Object::New(env);
  res.Set("loss", loss);
  res.Set("counted", counted);
  return res;
}

// (config, weights, lora, prompt: Int32Array, maxNew, stops: Int32Array, out: Int32Array[maxNew]) -> count
Napi::Value Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Model m = parseModel(info, false);
  auto i32 = [&](int k, const char* what) {
    if (!info[k].IsTypedArray() || info[k].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      throw Napi::TypeError::New(env, std::string(what) + ": expected an Int32Array");
    return info[k].As<Napi::Int32Array>();
  };
  auto prompt = i32(3, "prompt");
  const int maxNew = info[4].As<Napi::Number>().Int32Value();
  auto stops = i32(5, "stops");
  auto out = i32(6, "out");
  if (prompt.ElementLength() == 0) throw Napi::RangeError::New(env, "prompt: expected at least one token");
  if (maxNew < 1 || out.ElementLength() < (size_t)maxNew) throw Napi::RangeError::New(env, "out: expected maxNew >= 1 entries");
  for (size_t i = 0; i < prompt.ElementLength(); i++)
    if (prompt[i] < 0 || prompt[i] >= m.cfg.vocab) throw Napi::RangeError::New(env, "prompt[" + std::to_string(i) + "] is outside the vocabulary");
  const int n = ft::generate(m.cfg, m.w, m.lora, prompt.Data(), (int)prompt.ElementLength(), maxNew, stops.Data(), (int)stops.ElementLength(), out.Data());
  return Napi::Number::New(env, n);
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  const int n = info[0].As<Napi::Number>().Int32Value();
  return Napi::Number::New(info.Env(), n == 0 ? ft::threads() : ft::setThreads(n));
}

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  using ft::simd::Isa;
  Isa want;
  if (name == "scalar") want = Isa::Scalar;
  else if (name == "avx2") want = Isa::Avx2;
  else if (name == "avx512") want = Isa::Avx512;
  else if (name == "best") want = ft::simd::bestIsa();
  else throw Napi::RangeError::New(info.Env(), "qwen3SetIsa: expected scalar, avx2, avx512 or best, got " + name);
  return Napi::String::New(info.Env(), ft::simd::isaName(ft::simd::setIsa(want)));
}

// a Float32Array argument with at least `need` elements
float* f32min(const Napi::Value& v, size_t need, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a Float32Array");
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() < need) throw Napi::RangeError::New(v.Env(), std::string(what) + ": too short for the shape");
  return a.Data();
}

// gemm(M, N, K, A, rsA, csA, B, ldb, C, ldc, accumulate)
template <void (*Fn)(int, int, int, const float*, ptrdiff_t, ptrdiff_t, const float*, ptrdiff_t, float*, ptrdiff_t, bool)>
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  auto i32 = [&](int k) { return info[k].As<Napi::Number>().Int32Value(); };
  const int M = i32(0), N = i32(1), K = i32(2), rsA = i32(4), csA = i32(5), ldb = i32(7), ldc = i32(9);
  if (M < 1 || N < 1 || K < 1 || rsA < 0 || csA < 0 || ldb < N || ldc < N) throw Napi::RangeError::New(info.Env(), "gemm: bad shape");
  const float* A = f32min(info[3], (size_t)(M - 1) * rsA + (size_t)(K - 1) * csA + 1, "A");
  const float* B = f32min(info[6], (size_t)(K - 1) * ldb + N, "B");
  float* C = f32min(info[8], (size_t)(M - 1) * ldc + N, "C");
  Fn(M, N, K, A, rsA, csA, B, ldb, C, ldc, info[10].As<Napi::Boolean>().Value());
  return info.Env().Undefined();
}

template <float (*Fn)(const float*, const float*, int)>
Napi::Value Dot(const Napi::CallbackInfo& info) {
  const size_t n = info[0].As<Napi::Float32Array>().ElementLength();
  return Napi::Number::New(info.Env(), Fn(f32min(info[0], n, "a"), f32min(info[1], n, "b"), (int)n));
}

template <void (*Fn)(float*, float, const float*, int)>
Napi::Value Axpy(const Napi::CallbackInfo& info) {  // axpy(y, alpha, x)
  const size_t n = info[0].As<Napi::Float32Array>().ElementLength();
  Fn(f32min(info[0], n, "y"), info[1].As<Napi::Number>().FloatValue(), f32min(info[2], n, "x"), (int)n);
  return info.Env().Undefined();
}

template <void (*Fn)(float*, int)>
Napi::Value Exp(const Napi::CallbackInfo& info) {
  const size_t n = info[0].As<Napi::Float32Array>().ElementLength();
  Fn(f32min(info[0], n, "x"), (int)n);
  return info.Env().Undefined();
}

}  // namespace

namespace ft {
void RegisterQwen3(Napi::Env env, Napi::Object exports) {
  exports.Set("qwen3ForwardBackward", Napi::Function::New(env, ForwardBackward<ft::forwardBackward>));
  exports.Set("qwen3ForwardBackwardRef", Napi::Function::New(env, ForwardBackward<ft::forwardBackward_ref>));
  exports.Set("qwen3Generate", Napi::Function::New(env, Generate));
  exports.Set("qwen3SetThreads", Napi::Function::New(env, SetThreads));
  exports.Set("qwen3SetIsa", Napi::Function::New(env, SetIsa));
  auto s = Napi::Object::New(env);
  s.Set("gemm", Napi::Function::New(env, Gemm<simd::gemm>));
  s.Set("gemmRef", Napi::Function::New(env, Gemm<simd::gemm_ref>));
  s.Set("dot", Napi::Function::New(env, Dot<simd::dot>));
  s.Set("dotRef", Napi::Function::New(env, Dot<simd::dot_ref>));
  s.Set("axpy", Napi::Function::New(env, Axpy<simd::axpy>));
  s.Set("axpyRef", Napi::Function::New(env, Axpy<simd::axpy_ref>));
  s.Set("exp", Napi::Function::New(env, Exp<simd::expInPlace>));
  s.Set("expRef", Napi::Function::New(env, Exp<simd::expInPlace_ref>));
  exports.Set("qwen3Simd", s);
}
}  // namespace ft
