// Reading the arguments of an addon function: JS typed arrays become (pointer, length) views
// without copying, numbers and objects become C++ values, and every mismatch becomes an
// ft::Error that names the function, the argument and what was expected.
//
//   Args args(info, "nf4Quantize");
//   View<const float> x = args.f32(0, "x");
//   View<std::uint8_t> codes = args.u8(1, "codes");
//   args.expectLength(codes, nf4::codeBytes(x.size), "ceil(n / 2)");
//   args.expectDisjoint(codes, x);
//
// Only the addon (addon.cpp) includes this file; the kernels never see N-API types.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "adamw.h"
#include "check.h"

namespace ft::js {

/** A typed array's memory seen from C++: T* data is valid while the JS array is alive. */
template <typename T>
struct View {
  T* data;
  std::size_t size;  // elements
  const char* name;

  std::uintptr_t begin() const { return reinterpret_cast<std::uintptr_t>(data); }
  std::uintptr_t end() const { return begin() + size * sizeof(T); }
};

class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* function) : info_(info), function_(function) {}

  View<float> f32(std::size_t index, const char* name) const {
    return typed<float>(index, name, napi_float32_array, "Float32Array");
  }
  View<std::uint8_t> u8(std::size_t index, const char* name) const {
    return typed<std::uint8_t>(index, name, napi_uint8_array, "Uint8Array");
  }

  double number(std::size_t index, const char* name) const {
    FT_CHECK(index < info_.Length() && info_[index].IsNumber(), function_, ": ", name, " (argument ", index + 1,
             ") must be a number");
    return info_[index].As<Napi::Number>().DoubleValue();
  }

  bool boolean(std::size_t index, const char* name) const {
    FT_CHECK(index < info_.Length() && info_[index].IsBoolean(), function_, ": ", name, " (argument ", index + 1,
             ") must be a boolean");
    return info_[index].As<Napi::Boolean>().Value();
  }

  /** { lr, beta1, beta2, eps, weightDecay, step } (values are checked by adamw::coefficients). */
  adamw::Hyper hyper(std::size_t index) const {
    FT_CHECK(index < info_.Length() && info_[index].IsObject(), function_, ": hyper (argument ", index + 1,
             ") must be an object { lr, beta1, beta2, eps, weightDecay, step }");
    const Napi::Object o = info_[index].As<Napi::Object>();
    adamw::Hyper h{};
    h.lr = field(o, "lr");
    h.beta1 = field(o, "beta1");
    h.beta2 = field(o, "beta2");
    h.eps = field(o, "eps");
    h.weightDecay = field(o, "weightDecay");
    const double step = number(o, "step");
    FT_CHECK(step == static_cast<double>(static_cast<std::int64_t>(step)) && step >= 1.0 && step < 9.0e15, function_,
             ": hyper.step is ", step, ", expected an integer >= 1");
    h.step = static_cast<std::int64_t>(step);
    return h;
  }

  template <typename T>
  void expectLength(const View<T>& view, std::size_t expected, const char* rule) const {
    FT_CHECK(view.size == expected, function_, ": ", view.name, " has ", view.size, " elements, expected ", expected,
             " (", rule, ")");
  }

  /** An output must not share memory with another argument, or the kernel would read its own writes. */
  template <typename A, typename B>
  void expectDisjoint(const View<A>& out, const View<B>& other) const {
    const bool overlap = out.size > 0 && other.size > 0 && out.begin() < other.end() && other.begin() < out.end();
    FT_CHECK(!overlap, function_, ": ", out.name, " and ", other.name,
             " share memory; pass separate buffers (e.g. not two views of one ArrayBuffer)");
  }

 private:
  template <typename T>
  View<T> typed(std::size_t index, const char* name, napi_typedarray_type type, const char* typeName) const {
    FT_CHECK(index < info_.Length() && info_[index].IsTypedArray(), function_, ": ", name, " (argument ", index + 1,
             ") must be a ", typeName);
    const Napi::TypedArray array = info_[index].As<Napi::TypedArray>();
    FT_CHECK(array.TypedArrayType() == type, function_, ": ", name, " (argument ", index + 1, ") must be a ",
             typeName, ", not another kind of typed array");
    Napi::TypedArrayOf<T> typedArray = info_[index].As<Napi::TypedArrayOf<T>>();
    return View<T>{typedArray.Data(), typedArray.ElementLength(), name};
  }

  double number(const Napi::Object& o, const char* key) const {
    const Napi::Value value = o.Get(key);
    FT_CHECK(value.IsNumber(), function_, ": hyper.", key, " must be a number");
    return value.As<Napi::Number>().DoubleValue();
  }

  float field(const Napi::Object& o, const char* key) const { return static_cast<float>(number(o, key)); }

  const Napi::CallbackInfo& info_;
  const char* function_;
};

}  // namespace ft::js
