/*
 * Calling-convention shim: TVM 0.8 packed-C functions (what dlr 1.6.0's graph runtime calls) on
 * top of kernels compiled by TVM 0.25 (tvm-ffi "safe call" symbols).
 *
 * For every kernel NAME the build lists in GGV_KERNELS as GGV_KERNEL(NAME), this file defines
 *
 *     int ggv_NAME(TVMValue *args, int *type_codes, int num_args,
 *                  TVMValue *ret, int *ret_type_code, void *resource_handle)
 *
 * (TVM 0.8's TVMBackendPackedCFunc, looked up by the graph JSON's func_name) which repacks the
 * arguments as TVMFFIAny values and calls __tvm_ffi_NAME(self, args, num_args, result). Both
 * sides pass tensors as DLTensor pointers and both use type code 7 for them
 * (kTVMDLTensorHandle / kTVMFFIDLTensorPtr); DLTensor's layout is the same in both DLPack
 * versions.
 *
 * The kernels report errors through TVMFFIErrorSetRaisedFromCStrParts, which is defined here:
 * the message goes to the 0.8 runtime through __TVMAPISetLastError, a context pointer that
 * runtime fills in when it loads this library. The workspace functions the kernels use
 * (__TVMBackendAllocWorkspace, __TVMBackendFreeWorkspace) are context pointers of the same
 * kind, defined in the kernels' object file.
 *
 * Built by modelbuild/dlr/compile_dlr.py: gcc -shared -fPIC -DGGV_KERNELS='"kernels.inc"'.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef union {
  int64_t v_int64;
  double v_float64;
  void *v_handle;
  const char *v_str;
} TVMValue; /* TVM 0.8 */

typedef struct {
  int32_t type_index;
  uint32_t zero_padding;
  union {
    int64_t v_int64;
    double v_float64;
    void *v_ptr;
  };
} TVMFFIAny; /* tvm-ffi 0.1 */

typedef int32_t (*ggv_safe_call)(void *self, const TVMFFIAny *args, int32_t num_args,
                                 TVMFFIAny *result);

/* TVM 0.8 type codes and their tvm-ffi type indices. */
enum { kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kTVMOpaqueHandle = 3, kTVMNullptr = 4,
       kTVMDLTensorHandle = 7 };
enum { kFFINone = 0, kFFIInt = 1, kFFIFloat = 3, kFFIOpaquePtr = 4, kFFIDLTensorPtr = 7 };

#define GGV_MAX_ARGS 64

/* Filled in by the TVM 0.8 runtime when it loads the library (InitContextFunctions). */
void *__tvm_module_ctx = NULL;
void (*__TVMAPISetLastError)(const char *msg) = NULL;

static __thread char ggv_error[1024];

void TVMFFIErrorSetRaisedFromCStrParts(const char *kind, const char **parts, int32_t num_parts) {
  size_t used = (size_t)snprintf(ggv_error, sizeof ggv_error, "%s: ", kind ? kind : "Error");
  for (int32_t i = 0; i < num_parts && used < sizeof ggv_error; ++i) {
    if (parts[i] != NULL) {
      used += (size_t)snprintf(ggv_error + used, sizeof ggv_error - used, "%s", parts[i]);
    }
  }
}

void TVMFFIErrorSetRaisedFromCStr(const char *kind, const char *message) {
  const char *parts[1] = {message};
  TVMFFIErrorSetRaisedFromCStrParts(kind, parts, 1);
}

static void ggv_fail(const char *name, const char *what) {
  snprintf(ggv_error, sizeof ggv_error, "%s: %s", name, what);
}

static int ggv_call(ggv_safe_call fn, const char *name, const TVMValue *args,
                    const int *type_codes, int num_args) {
  TVMFFIAny packed[GGV_MAX_ARGS];
  TVMFFIAny result;
  int rc;
  if (num_args > GGV_MAX_ARGS) {
    ggv_fail(name, "too many arguments for the shim");
    rc = -1;
    goto done;
  }
  for (int i = 0; i < num_args; ++i) {
    packed[i].zero_padding = 0;
    switch (type_codes[i]) {
      case kTVMDLTensorHandle:
        packed[i].type_index = kFFIDLTensorPtr;
        packed[i].v_ptr = args[i].v_handle;
        break;
      case kDLInt:
      case kDLUInt:
        packed[i].type_index = kFFIInt;
        packed[i].v_int64 = args[i].v_int64;
        break;
      case kDLFloat:
        packed[i].type_index = kFFIFloat;
        packed[i].v_float64 = args[i].v_float64;
        break;
      case kTVMOpaqueHandle:
        packed[i].type_index = kFFIOpaquePtr;
        packed[i].v_ptr = args[i].v_handle;
        break;
      case kTVMNullptr:
        packed[i].type_index = kFFINone;
        packed[i].v_int64 = 0;
        break;
      default:
        ggv_fail(name, "argument of a type the shim does not pass");
        rc = -1;
        goto done;
    }
  }
  memset(&result, 0, sizeof result);
  ggv_error[0] = '\0';
  rc = fn(NULL, packed, num_args, &result);
done:
  if (rc != 0 && __TVMAPISetLastError != NULL) {
    __TVMAPISetLastError(ggv_error[0] ? ggv_error : "kernel failed");
  }
  return rc;
}

#define GGV_KERNEL(name)                                                                   \
  int32_t __tvm_ffi_##name(void *, const TVMFFIAny *, int32_t, TVMFFIAny *);               \
  int ggv_##name(TVMValue *args, int *type_codes, int num_args, TVMValue *ret,             \
                 int *ret_type_code, void *resource_handle) {                              \
    (void)ret;                                                                             \
    (void)ret_type_code;                                                                   \
    (void)resource_handle;                                                                 \
    return ggv_call(__tvm_ffi_##name, #name, args, type_codes, num_args);                  \
  }

#ifdef GGV_KERNELS
#include GGV_KERNELS
#endif
