// SPDX-License-Identifier: Apache-2.0
//
// binding.cc: the only file that knows N-API. It wraps rf_core (plain C) as
// the JS class Session and the function kernelEnum. Batches cross to JS through
// a ThreadSafeFunction whose bounded queue (maxPendingBatches) blocks the poll
// thread when JS falls behind; each batch becomes an external Buffer whose
// finalizer hands the memory back to the core's pool (no copy).
#include <napi.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "rf_core.h"

namespace {

Napi::Error MakeError(Napi::Env env, const rf_error& e) {
  char msg[1024];
  rf_error_message(&e, msg, sizeof(msg));
  Napi::Error err = Napi::Error::New(env, msg);
  err.Set("op", Napi::String::New(env, e.op));
  if (e.target[0]) err.Set("target", Napi::String::New(env, e.target));
  err.Set("errno", Napi::Number::New(env, e.err));
  err.Set("code", Napi::String::New(env, rf_errno_name(e.err)));
  if (e.log) err.Set("log", Napi::String::New(env, e.log));
  return err;
}

void ThrowRf(Napi::Env env, rf_error* e) {
  MakeError(env, *e).ThrowAsJavaScriptException();
  rf_error_clear(e);
}

void ThrowType(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
}

class SessionWrap;
void CallJs(Napi::Env env, Napi::Function cb, SessionWrap* w, rf_batch* b);
using Tsfn = Napi::TypedThreadSafeFunction<SessionWrap, rf_batch, CallJs>;

class SessionWrap : public Napi::ObjectWrap<SessionWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Session",
                       {
                           InstanceMethod<&SessionWrap::AddObject>("addObject"),
                           InstanceMethod<&SessionWrap::Start>("start"),
                           InstanceMethod<&SessionWrap::Pause>("pause"),
                           InstanceMethod<&SessionWrap::Resume>("resume"),
                           InstanceMethod<&SessionWrap::Stop>("stop"),
                           InstanceMethod<&SessionWrap::Drops>("drops"),
                           InstanceMethod<&SessionWrap::MapCounters>("mapCounters"),
                           InstanceMethod<&SessionWrap::Stats>("stats"),
                           InstanceMethod<&SessionWrap::AttachPerfEvent>("attachPerfEvent"),
                           InstanceMethod<&SessionWrap::ProfileDrain>("profileDrain"),
                           InstanceMethod<&SessionWrap::L7Claim>("l7Claim"),
                       });
  }

  explicit SessionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SessionWrap>(info) {
    Napi::Env env = info.Env();
    rf_options o = {16u << 20, 10, 1u << 20, 1};
    double pending = 8;
    if (info.Length() > 0 && !info[0].IsUndefined()) {
      if (!info[0].IsObject()) {
        ThrowType(env, "Session: options must be an object");
        return;
      }
      Napi::Object opts = info[0].As<Napi::Object>();
      struct {
        const char* name;
        double min, max;
        double* out;
      } fields[4];
      double rb = o.ring_bytes, pt = o.poll_timeout_ms, mb = o.max_batch_bytes;
      fields[0] = {"ringBytes", 4096, 2147483648.0 / 2, &rb};
      fields[1] = {"pollTimeoutMs", 0, 60000, &pt};
      fields[2] = {"maxBatchBytes", 4096, 1 << 30, &mb};
      fields[3] = {"maxPendingBatches", 1, 1 << 16, &pending};
      for (auto& f : fields) {
        Napi::Value v = opts.Get(f.name);
        if (v.IsUndefined()) continue;
        if (!v.IsNumber()) {
          ThrowType(env, std::string("Session: ") + f.name + " must be a number");
          return;
        }
        double d = v.As<Napi::Number>().DoubleValue();
        if (!(d >= f.min && d <= f.max) || d != static_cast<double>(static_cast<int64_t>(d))) {
          ThrowType(env, std::string("Session: ") + f.name + " out of range");
          return;
        }
        *f.out = d;
      }
      Napi::Value et = opts.Get("edgeTriggered");
      if (!et.IsUndefined()) {
        if (!et.IsBoolean()) {
          ThrowType(env, "Session: edgeTriggered must be a boolean");
          return;
        }
        o.edge_triggered = et.As<Napi::Boolean>().Value() ? 1 : 0;
      }
      o.ring_bytes = static_cast<uint32_t>(rb);
      o.poll_timeout_ms = static_cast<int>(pt);
      o.max_batch_bytes = static_cast<uint32_t>(mb);
    }
    maxPending_ = static_cast<size_t>(pending);
    rf_error err = {};
    s_ = rf_session_new(&o, &err);
    if (!s_) {
      ThrowRf(env, &err);
      return;
    }
    env_ = env;
    AddHook();
  }

  ~SessionWrap() override {
    RemoveHook();
    if (s_ && started_ && !finished_) {
      // Only reachable if the JS object died while running, which the Ref in
      // start() prevents; be safe anyway.
      tsfn_.Abort();
    }
    rf_session_free(s_);
    s_ = nullptr;
  }

  // Called on the poll thread.
  static int Deliver(void* ctx, rf_batch* b) {
    auto* w = static_cast<SessionWrap*>(ctx);
    return w->tsfn_.BlockingCall(b) == napi_ok ? 0 : 1;
  }
  static void Done(void* ctx) {
    auto* w = static_cast<SessionWrap*>(ctx);
    // nullptr marks the end: queued after every batch, so stop() resolves after them.
    if (w->tsfn_.BlockingCall(static_cast<rf_batch*>(nullptr)) == napi_ok) w->tsfn_.Release();
  }

  // JS thread: every batch has been delivered and the thread is about to exit.
  void OnDone(Napi::Env env) {
    if (finished_) return;
    rf_session_finish(s_);
    Finished(env);
  }


 private:
  Napi::Value AddObject(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!s_) return Stopped(env, "addObject");
    if (info.Length() < 1 || !info[0].IsString()) {
      ThrowType(env, "addObject(path, globals): path must be a string");
      return env.Undefined();
    }
    std::string path = info[0].As<Napi::String>();
    std::vector<std::string> names;
    std::vector<rf_global> globals;
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      if (!info[1].IsObject()) {
        ThrowType(env, "addObject(path, globals): globals must be an object of Buffers");
        return env.Undefined();
      }
      Napi::Object g = info[1].As<Napi::Object>();
      Napi::Array keys = g.GetPropertyNames();
      names.reserve(keys.Length());
      for (uint32_t i = 0; i < keys.Length(); i++) {
        names.push_back(keys.Get(i).ToString());
        Napi::Value v = g.Get(names.back());
        if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
          ThrowType(env, "addObject: global '" + names.back() + "' must be a Buffer");
          return env.Undefined();
        }
        auto u8 = v.As<Napi::Uint8Array>();
        globals.push_back({nullptr, u8.Data(), u8.ByteLength()});
      }
    }
    // addObject(path, globals, maxEntries): { map: entries } sized before the load (rf_core.h RF_MAX_ENTRIES_PREFIX)
    std::vector<uint32_t> sizes;
    if (info.Length() > 2 && !info[2].IsUndefined()) {
      if (!info[2].IsObject()) {
        ThrowType(env, "addObject(path, globals, maxEntries): maxEntries must be an object of numbers");
        return env.Undefined();
      }
      Napi::Object m = info[2].As<Napi::Object>();
      Napi::Array keys = m.GetPropertyNames();
      sizes.reserve(keys.Length());  // stable addresses: globals point into it
      for (uint32_t i = 0; i < keys.Length(); i++) {
        std::string map = keys.Get(i).ToString();
        Napi::Value v = m.Get(map);
        double n = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
        if (!(n >= 1 && n <= 4294967295.0) || n != static_cast<double>(static_cast<uint32_t>(n))) {
          ThrowType(env, "addObject: maxEntries of '" + map + "' must be an integer in 1..2^32-1");
          return env.Undefined();
        }
        names.push_back(RF_MAX_ENTRIES_PREFIX + map);
        sizes.push_back(static_cast<uint32_t>(n));
        globals.push_back({nullptr, &sizes.back(), sizeof(uint32_t)});
      }
    }
    for (size_t i = 0; i < names.size(); i++) globals[i].name = names[i].c_str();
    rf_object_info oi = {};
    rf_error err = {};
    if (rf_session_add_object(s_, path.c_str(), globals.data(), globals.size(), &oi, &err)) {
      ThrowRf(env, &err);
      return env.Undefined();
    }
    Napi::Object out = Napi::Object::New(env);
    Napi::Array progs = Napi::Array::New(env, oi.n_programs);
    for (size_t i = 0; i < oi.n_programs; i++) progs.Set(i, Napi::String::New(env, oi.programs[i]));
    out.Set("name", Napi::String::New(env, oi.name));
    out.Set("programs", progs);
    Napi::Array skipped = Napi::Array::New(env, oi.n_skipped);
    for (size_t i = 0; i < oi.n_skipped; i++) {
      Napi::Object k = Napi::Object::New(env);
      k.Set("program", Napi::String::New(env, oi.skipped[i].program));
      k.Set("section", Napi::String::New(env, oi.skipped[i].section));
      k.Set("reason", Napi::String::New(env, oi.skipped[i].reason));
      skipped.Set(i, k);
    }
    out.Set("skipped", skipped);
    rf_object_info_clear(&oi);
    return out;
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!s_ || stopping_) return Stopped(env, "start");
    if (started_) {
      Napi::Error::New(env, "start: session already started").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    if (info.Length() < 1 || !info[0].IsFunction()) {
      ThrowType(env, "start(onBatch): onBatch must be a function");
      return env.Undefined();
    }
    tsfn_ = Tsfn::New(env, info[0].As<Napi::Function>(), "ringflow.poll", maxPending_, 1, this);
    rf_error err = {};
    if (rf_session_start(s_, Deliver, Done, this, &err)) {
      tsfn_.Abort();
      ThrowRf(env, &err);
      return env.Undefined();
    }
    started_ = true;
    Ref();  // keep this object (and so the session) alive until the thread is done
    // Re-register so our hook runs before the TSFN's own one (hooks run last-in first-out).
    RemoveHook();
    AddHook();
    return env.Undefined();
  }

  Napi::Value Pause(const Napi::CallbackInfo& info) {
    if (s_) rf_session_pause(s_);
    return info.Env().Undefined();
  }
  Napi::Value Resume(const Napi::CallbackInfo& info) {
    if (s_) rf_session_resume(s_);
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto d = Napi::Promise::Deferred::New(env);
    if (!s_ || finished_) {
      d.Resolve(env.Undefined());
      return d.Promise();
    }
    waiters_.push_back(d);
    if (!stopping_) {
      stopping_ = true;
      // Detaches the programs now; the thread drains, delivers, then Done() -> OnDone().
      if (!rf_session_request_stop(s_)) {
        rf_session_finish(s_);
        Finished(env);
      }
    }
    return d.Promise();
  }

  Napi::Value Drops(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!s_) return Stopped(env, "drops");
    uint64_t v[RF_CORE_EV_MAX];
    rf_error err = {};
    if (rf_session_drops(s_, v, &err)) {
      ThrowRf(env, &err);
      return env.Undefined();
    }
    Napi::Array a = Napi::Array::New(env, RF_CORE_EV_MAX);
    for (uint32_t i = 0; i < RF_CORE_EV_MAX; i++) a.Set(i, Napi::BigInt::New(env, v[i]));
    return a;
  }

  // The hand-over sweep (rf_session_l7_claim): claimed records as one batch; null when no object has the map.
  Napi::Value L7Claim(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!s_) return Stopped(env, "l7Claim");
    if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
      ThrowType(env, "l7Claim(handoverNs, staleNs): two numbers");
      return env.Undefined();
    }
    double h = info[0].As<Napi::Number>().DoubleValue(), st = info[1].As<Napi::Number>().DoubleValue();
    if (!(h >= 0 && h < 9e15) || !(st >= 0 && st < 9e15)) {
      ThrowType(env, "l7Claim: handoverNs and staleNs must be in 0..9e15");
      return env.Undefined();
    }
    void* out = nullptr;
    size_t len = 0;
    rf_error err = {};
    int n = rf_session_l7_claim(s_, static_cast<uint64_t>(h), static_cast<uint64_t>(st), &out, &len, &err);
    if (n == -ENOENT && strcmp(err.op, "rf_session_l7_claim") == 0) {
      rf_error_clear(&err);
      return env.Null();
    }
    if (n < 0) {
      ThrowRf(env, &err);
      return env.Undefined();
    }
    Napi::Buffer<uint8_t> b = Napi::Buffer<uint8_t>::Copy(env, static_cast<uint8_t*>(out), len);
    free(out);
    return b;
  }

  // Per-index sums of a counter map (rf_session_map_counters); null when no object has it.
  Napi::Value MapCounters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!s_) return Stopped(env, "mapCounters");
    if (info.Length() < 1 || !info[0].IsString()) {
      ThrowType(env, "mapCounters(name): name must be a string");
      return env.Undefined();
    }
    std::string name = info[0].As<Napi::String>();
    uint64_t v[RF_CORE_COUNTERS_MAX];
    rf_error err = {};
    int n = rf_session_map_counters(s_, name.c_str(), v, RF_CORE_COUNTERS_MAX, &err);
    if (n == -ENOENT && strcmp(err.op, "rf_session_map_counters") == 0) {
      rf_error_clear(&err);
      return env.Null();
    }
    if (n < 0) {
      ThrowRf(env, &err);
      return env.Undefined();
    }
    Napi::Array a = Napi::Array::New(env, n);
    for (int i = 0; i < n; i++) a.Set(i, Napi::BigInt::New(env, v[i]));
    return a;
  }

  // Profiling (rf_core.h): a perf_event program on every online CPU's cpu-clock; count of CPUs.
  Napi::Value AttachPerfEvent(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!s_) return Stopped(env, "attachPerfEvent");
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
      ThrowType(env, "attachPerfEvent(program, frequencyHz): a string and a number");
      return env.Undefined();
    }
    std::string prog = info[0].As<Napi::String>();
    double hz = info[1].As<Napi::Number>().DoubleValue();
    if (!(hz >= 1 && hz <= 100000) || hz != static_cast<double>(static_cast<int64_t>(hz))) {
      ThrowType(env, "attachPerfEvent: frequencyHz must be an integer in 1..100000");
      return env.Undefined();
    }
    rf_error err = {};
    int n = rf_session_attach_perf_event(s_, prog.c_str(), static_cast<uint64_t>(hz), &err);
    if (n < 0) {
      ThrowRf(env, &err);
      return env.Undefined();
    }
    return Napi::Number::New(env, n);
  }

  // One drain of a profiling map set, as whole Buffers (copies: a drain is small and rare).
  Napi::Value ProfileDrain(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!s_) return Stopped(env, "profileDrain");
    if (info.Length() < 1 || !info[0].IsString()) {
      ThrowType(env, "profileDrain(prefix, epochDrains): prefix must be a string");
      return env.Undefined();
    }
    std::string prefix = info[0].As<Napi::String>();
    double epochDrains = 1;
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      epochDrains = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0;
      if (!(epochDrains >= 1 && epochDrains <= 1000000) || epochDrains != static_cast<double>(static_cast<int64_t>(epochDrains))) {
        ThrowType(env, "profileDrain: epochDrains must be an integer in 1..1000000");
        return env.Undefined();
      }
    }
    rf_profile_drain d = {};
    rf_error err = {};
    if (rf_session_profile_drain(s_, prefix.c_str(), static_cast<uint32_t>(epochDrains), &d, &err)) {
      ThrowRf(env, &err);
      return env.Undefined();
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("generation", Napi::BigInt::New(env, d.generation));
    o.Set("counts", Napi::Buffer<uint8_t>::Copy(env, static_cast<uint8_t*>(d.counts), d.n_counts * 32));
    o.Set("stacks", Napi::Buffer<uint8_t>::Copy(env, static_cast<uint8_t*>(d.stacks), d.stacks_len));
    o.Set("comms", Napi::Buffer<uint8_t>::Copy(env, static_cast<uint8_t*>(d.comms), d.n_comms * 20));
    rf_profile_drain_clear(&d);
    return o;
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    rf_stats st = {};
    if (s_) rf_session_stats(s_, &st);
    Napi::Object o = Napi::Object::New(env);
    o.Set("records", Napi::Number::New(env, static_cast<double>(st.records)));
    o.Set("batches", Napi::Number::New(env, static_cast<double>(st.batches)));
    o.Set("bytes", Napi::Number::New(env, static_cast<double>(st.bytes)));
    o.Set("polls", Napi::Number::New(env, static_cast<double>(st.polls)));
    o.Set("wakeups", Napi::Number::New(env, static_cast<double>(st.wakeups)));
    o.Set("ringPending", Napi::Number::New(env, static_cast<double>(st.ring_pending)));
    return o;
  }

  Napi::Value Stopped(Napi::Env env, const char* op) {
    rf_error e = {};
    snprintf(e.op, sizeof(e.op), "%s", op);
    snprintf(e.detail, sizeof(e.detail), "%s", s_ ? "session is stopped" : "session was not created");
    e.err = ESHUTDOWN;
    ThrowRf(env, &e);
    return env.Undefined();
  }

  void Finished(Napi::Env env) {
    finished_ = true;
    RemoveHook();
    for (auto& d : waiters_) d.Resolve(env.Undefined());
    waiters_.clear();
    if (started_) Unref();
  }

  // Worker or environment teardown without stop(): nothing can reach JS any more,
  // so unblock the thread (abort the queue), join it, detach and close everything.
  static void Cleanup(void* arg) {
    auto* w = static_cast<SessionWrap*>(arg);
    w->hooked_ = false;
    if (!w->s_ || w->finished_) return;
    if (w->started_) w->tsfn_.Abort();
    rf_session_abort(w->s_);
    w->finished_ = true;
  }
  void AddHook() {
    if (!hooked_ && napi_add_env_cleanup_hook(env_, Cleanup, this) == napi_ok) hooked_ = true;
  }
  void RemoveHook() {
    if (hooked_) napi_remove_env_cleanup_hook(env_, Cleanup, this);
    hooked_ = false;
  }

  rf_session* s_ = nullptr;
  napi_env env_ = nullptr;
  Tsfn tsfn_;
  size_t maxPending_ = 8;
  bool started_ = false, stopping_ = false, finished_ = false, hooked_ = false;
  std::vector<Napi::Promise::Deferred> waiters_;
};

void FinalizeBatch(napi_env env, void* /*data*/, void* hint) {
  auto* b = static_cast<rf_batch*>(hint);
  int64_t change;
  napi_adjust_external_memory(env, -static_cast<int64_t>(b->cap), &change);
  rf_batch_release(b);
}

void CallJs(Napi::Env env, Napi::Function cb, SessionWrap* w, rf_batch* b) {
  if (env == nullptr) {  // the queue is being torn down
    if (b) rf_batch_release(b);
    return;
  }
  if (b == nullptr) {
    w->OnDone(env);
    return;
  }
  napi_value buf;
  if (napi_create_external_buffer(env, b->len, b->data, FinalizeBatch, b, &buf) == napi_ok) {
    int64_t change;
    // Tell V8 about the memory it keeps alive, so it collects spent batches promptly.
    napi_adjust_external_memory(env, static_cast<int64_t>(b->cap), &change);
  } else {
    // External buffers can be disallowed (V8 sandbox): copy instead.
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
    Napi::Buffer<uint8_t> copy = Napi::Buffer<uint8_t>::Copy(env, b->data, b->len);
    rf_batch_release(b);
    buf = copy;
  }
  cb.Call({buf});  // an exception thrown by onBatch surfaces as uncaughtException
}

Napi::Value KernelEnum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowType(env, "kernelEnum(name): name must be a string");
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>();
  rf_enum_entry* v = nullptr;
  rf_error err = {};
  int n = rf_kernel_enum(name.c_str(), &v, &err);
  if (n < 0) {
    ThrowRf(env, &err);
    return env.Undefined();
  }
  Napi::Object o = Napi::Object::New(env);
  for (int i = 0; i < n; i++) o.Set(std::to_string(v[i].value), Napi::String::New(env, v[i].name));
  free(v);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Session", SessionWrap::Init(env));
  exports.Set("kernelEnum", Napi::Function::New<KernelEnum>(env, "kernelEnum"));
  exports.Set("EV_MAX", Napi::Number::New(env, RF_CORE_EV_MAX));
  return exports;
}

}  // namespace

NODE_API_MODULE(ringflow_native, Init)
