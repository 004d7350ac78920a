// addon_qwen3.cpp: the JS face of the Qwen3 forward/backward (qwen3.h).
//
//   qwen3ForwardBackward(config, weights, lora, ids, mask, batch, seqLen, backward, logits?)
//     config   { hidden, intermediate, heads, kvHeads, headDim, layers, vocab, ropeTheta, rmsEps }
//     weights  { embed, finalNorm, layers: [{ inputNorm, postNorm, qNorm, kNorm, w: [q, k, v, o, gate, up, down] }] }  (Float32Array each)
//     lora     { rank, scale, proj: [{ A, B, dA, dB } | null] }  (layers * 7, in the order q k v o gate up down)
//     ids      Int32Array [batch * seqLen];  mask Uint8Array [batch * seqLen]
//     logits   optional Float32Array [batch * seqLen * vocab]
//   → { loss, counted }
// Every array's length is checked against the config here, so the C++ below
// can trust its shapes.
#include <napi.h>

#include <string>

#include "qwen3.h"

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

Napi::Value ForwardBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto c = info[0].As<Napi::Object>();
  ft::Qwen3Config cfg{intOf(c, "hidden"), intOf(c, "intermediate"), intOf(c, "heads"), intOf(c, "kvHeads"), intOf(c, "headDim"),
                      intOf(c, "layers"), intOf(c, "vocab"), c.Get("ropeTheta").As<Napi::Number>().FloatValue(),
                      c.Get("rmsEps").As<Napi::Number>().FloatValue()};
  if (cfg.heads % cfg.kvHeads != 0 || cfg.headDim % 2 != 0) throw Napi::RangeError::New(env, "config: heads must be a multiple of kvHeads and headDim even");
  const size_t C = cfg.hidden, I = cfg.intermediate, HD = (size_t)cfg.heads * cfg.headDim, KD = (size_t)cfg.kvHeads * cfg.headDim;
  const size_t in[ft::NPROJ] = {C, C, C, HD, C, C, I};
  const size_t out[ft::NPROJ] = {HD, KD, KD, C, I, I, C};
  auto wo = info[1].As<Napi::Object>();
  ft::Qwen3Weights w;
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
  ft::Lora lora;
  lora.rank = intOf(lo, "rank");
  lora.scale = lo.Get("scale").As<Napi::Number>().FloatValue();
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
      lp.dA = const_cast<float*>(f32(po.Get("dA"), r * in[j], p + "dA"));
      lp.dB = const_cast<float*>(f32(po.Get("dB"), out[j] * r, p + "dB"));
    }
    lora.proj.push_back(lp);
  }
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
  const float loss = ft::forwardBackward(cfg, w, lora, ids, info[4].As<Napi::Uint8Array>().Data(), batch, seqLen, info[7].As<Napi::Boolean>().Value(), logits, &counted);
  auto res = Napi::Object::New(env);
  res.Set("loss", loss);
  res.Set("counted", counted);
  return res;
}

}  // namespace

namespace ft {
void RegisterQwen3(Napi::Env env, Napi::Object exports) { exports.Set("qwen3ForwardBackward", Napi::Function::New(env, ForwardBackward)); }
}  // namespace ft
