/*
 * A test double of libcuda.so.1: the process-checkpoint part of the CUDA driver API, with the
 * driver's per-process state machine, so that cedana's GPU code can be exercised on machines
 * without a GPU.
 *
 *   running --Lock--> locked --Checkpoint--> checkpointed --Restore--> locked --Unlock--> running
 *
 * A call in the wrong state returns 401 (CUDA_ERROR_ILLEGAL_STATE) and changes nothing. Any pid
 * whose /proc/PID exists counts as a CUDA process (starting "running"); any other pid gets 1
 * (CUDA_ERROR_INVALID_VALUE). Every call but cuInit/cuDriverGetVersion returns 3
 * (CUDA_ERROR_NOT_INITIALIZED) before cuInit, as the real driver does.
 *
 * Like the real driver (seen on an H200), a failed Restore is not retryable: the process stays
 * "checkpointed", a later Restore returns 304 (CUDA_ERROR_OPERATING_SYSTEM) and Unlock 401.
 *
 * A pid whose process has a new start time is another process. If the file says "checkpointed",
 * the newcomer is taken to be that process restored by CRIU from its images (whose CUDA state is
 * checkpointed, and restorable afresh: the poisoned mark is dropped); otherwise it is a reused
 * pid and starts "running".
 *
 * A container restored by runc or containerd gets new host pids. A process that was started with
 * FAKE_CUDA_TOKEN=<unique> in its environment carries that token through CRIU (the environment is
 * in its memory, /proc/PID/environ shows it): a pid with no state of its own whose token matches a
 * process that was checkpointed once is that process restored from its images: "checkpointed".
 *
 * State lives in files so that it survives across processes (the daemon, the CLI, the tests)
 * and tests can inspect it:
 *   $FAKE_CUDA_STATE_DIR/<pid>      "<state> <poisoned> <starttime> <imaged> <token>", state 0..3
 *                                   as cuCheckpointProcessGetState, starttime from
 *                                   /proc/PID/stat, token its FAKE_CUDA_TOKEN or "-"
 *   $FAKE_CUDA_STATE_DIR/calls.log  one line per call, "lock 1234 -> 0" (init: the caller's pid)
 * FAKE_CUDA_STATE_DIR defaults to /tmp/fake-cuda.
 *
 * Environment, read at every call:
 *   FAKE_CUDA_FAIL      "op[:code][,op[:code]]", op in init,lock,checkpoint,restore,unlock,state,tid;
 *                       the op returns code (default 999) and changes no state
 *   FAKE_CUDA_DELAY_MS  sleep this long in each lock/checkpoint/restore/unlock (the slow calls
 *                       of the real driver), before answering
 *   FAKE_CUDA_VERSION   what cuDriverGetVersion reports (default 13000)
 *
 * Built with -DFAKE_CUDA_NO_ERROR_NAMES it lacks cuGetErrorName/cuGetErrorString, which are
 * optional for the caller.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { RUNNING = 0, LOCKED = 1, CHECKPOINTED = 2, FAILED = 3 };
enum {
  SUCCESS = 0,
  INVALID_VALUE = 1,
  NOT_INITIALIZED = 3,
  OPERATING_SYSTEM = 304,
  ILLEGAL_STATE = 401,
  UNKNOWN = 999,
};

static int initialized;

static const char *state_dir(void) {
  const char *d = getenv("FAKE_CUDA_STATE_DIR");
  return d && *d ? d : "/tmp/fake-cuda";
}

static void ensure_dir(void) { mkdir(state_dir(), 0755); }

/* One write(2) per line on an O_APPEND fd, so lines of concurrent callers never interleave. */
static void log_call(const char *op, int pid, int rc) {
  char path[4096], line[128];
  ensure_dir();
  snprintf(path, sizeof path, "%s/calls.log", state_dir());
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  int n = snprintf(line, sizeof line, "%s %d -> %d\n", op, pid, rc);
  if (write(fd, line, (size_t)n) < 0) { /* nothing useful to do in a test double */ }
  close(fd);
}

/* The code FAKE_CUDA_FAIL assigns to op, or 0 when op is not listed. */
static int injected(const char *op) {
  const char *spec = getenv("FAKE_CUDA_FAIL");
  if (!spec || !*spec) return 0;
  size_t len = strlen(op);
  const char *p = spec;
  while (*p) {
    const char *end = strchr(p, ',');
    size_t item = end ? (size_t)(end - p) : strlen(p);
    if (item >= len && strncmp(p, op, len) == 0 && (item == len || p[len] == ':')) {
      return item == len ? UNKNOWN : atoi(p + len + 1);
    }
    if (!end) break;
    p = end + 1;
  }
  return 0;
}

static void delay(void) {
  const char *ms = getenv("FAKE_CUDA_DELAY_MS");
  long v = ms ? atol(ms) : 0;
  if (v <= 0) return;
  struct timespec ts = {v / 1000, (v % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

static int pid_exists(int pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d", pid);
  return pid > 0 && access(path, F_OK) == 0;
}

/* Field 22 of /proc/PID/stat (clock ticks after boot), which tells a reused pid apart. */
static unsigned long long start_time(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  /* comm may contain spaces and ')', so fields are counted from the last ')' (field 2's end). */
  char *p = strrchr(buf, ')');
  if (!p) return 0;
  for (int field = 2; field < 22 && p; field++) p = strchr(p + 1, ' ');
  return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* imaged: a Checkpoint succeeded on this pid once, so CRIU images taken while it was
 * checkpointed hold a checkpointed CUDA state (even if the original process was restored and went
 * on running, as after a leave-running dump): a process restored from them starts checkpointed. */
static int imaged;

/* The FAKE_CUDA_TOKEN of a process's environment as it started, or "-". */
static void env_token(int pid, char *out, size_t n) {
  char path[64], buf[65536];
  snprintf(out, n, "-");
  snprintf(path, sizeof path, "/proc/%d/environ", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t len = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (len <= 0) return;
  buf[len] = 0;
  for (char *p = buf; p < buf + len; p += strlen(p) + 1) {
    if (strncmp(p, "FAKE_CUDA_TOKEN=", 16) == 0 && p[16] && !strchr(p + 16, ' ')) {
      snprintf(out, n, "%s", p + 16);
      return;
    }
  }
}

/* True when a process with this token was checkpointed once (see the header). */
static int token_imaged(const char *token) {
  if (strcmp(token, "-") == 0) return 0;
  DIR *d = opendir(state_dir());
  if (!d) return 0;
  struct dirent *e;
  int found = 0;
  while (!found && (e = readdir(d))) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9' || strchr(e->d_name, '.')) continue;
    char path[4096], tok[256];
    int st = 0, poisoned = 0, was_imaged = 0;
    unsigned long long started = 0;
    snprintf(path, sizeof path, "%s/%s", state_dir(), e->d_name);
    FILE *f = fopen(path, "re");
    if (!f) continue;
    if (fscanf(f, "%d %d %llu %d %255s", &st, &poisoned, &started, &was_imaged, tok) == 5) {
      found = was_imaged && strcmp(tok, token) == 0;
    }
    fclose(f);
  }
  closedir(d);
  return found;
}

static void read_state(int pid, int *state, int *poisoned) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%d", state_dir(), pid);
  *state = RUNNING;
  *poisoned = 0;
  imaged = 0;
  unsigned long long started = 0;
  FILE *f = fopen(path, "re");
  if (!f) {
    char token[256];
    env_token(pid, token, sizeof token);
    if (token_imaged(token)) *state = CHECKPOINTED, imaged = 1;
    return;
  }
  if (fscanf(f, "%d %d %llu %d", state, poisoned, &started, &imaged) < 1) *state = RUNNING;
  fclose(f);
  if (started != 0 && started != start_time(pid)) {
    if (*state != CHECKPOINTED) *state = imaged ? CHECKPOINTED : RUNNING;
    if (*state == RUNNING) {
      char token[256];
      env_token(pid, token, sizeof token);
      if (token_imaged(token)) *state = CHECKPOINTED, imaged = 1;
    }
    *poisoned = 0;
  }
}

/* Written to a temporary name and renamed, so a reader never sees a half-written file. */
static void write_state(int pid, int state, int poisoned) {
  char path[4096], tmp[4200];
  ensure_dir();
  snprintf(path, sizeof path, "%s/%d", state_dir(), pid);
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
  FILE *f = fopen(tmp, "we");
  if (!f) return;
  if (state == CHECKPOINTED) imaged = 1;
  char token[256];
  env_token(pid, token, sizeof token);
  fprintf(f, "%d %d %llu %d %s\n", state, poisoned, start_time(pid), imaged, token);
  fclose(f);
  rename(tmp, path);
}

int cuInit(unsigned int flags) {
  int rc = flags != 0 ? INVALID_VALUE : injected("init");
  if (rc == SUCCESS) initialized = 1;
  log_call("init", (int)getpid(), rc);
  return rc;
}

int cuDriverGetVersion(int *version) {
  if (!version) return INVALID_VALUE;
  const char *v = getenv("FAKE_CUDA_VERSION");
  *version = v && *v ? atoi(v) : 13000;
  return SUCCESS;
}

/* The checks every per-process call shares; 0 when the call may go on. */
static int precheck(const char *op, int pid) {
  if (!initialized) return NOT_INITIALIZED;
  int rc = injected(op);
  if (rc) return rc;
  return pid_exists(pid) ? SUCCESS : INVALID_VALUE;
}

int cuCheckpointProcessGetState(int pid, int *state) {
  int rc = state ? precheck("state", pid) : INVALID_VALUE;
  int poisoned;
  if (rc == SUCCESS) read_state(pid, state, &poisoned);
  log_call("state", pid, rc);
  return rc;
}

int cuCheckpointProcessGetRestoreThreadId(int pid, int *tid) {
  int rc = tid ? precheck("tid", pid) : INVALID_VALUE;
  /* The real driver names a thread it created in the target; the main thread stands in here. */
  if (rc == SUCCESS) *tid = pid;
  log_call("tid", pid, rc);
  return rc;
}

/* One transition: from -> to, or ILLEGAL_STATE when the process is not in `from`. */
static int transition(const char *op, int pid, const void *args, int from, int to) {
  delay();
  int rc = args ? precheck(op, pid) : INVALID_VALUE;
  int state = RUNNING, poisoned = 0;
  if (rc == SUCCESS) {
    read_state(pid, &state, &poisoned);
    if (state != from) rc = ILLEGAL_STATE;
    else if (poisoned && to == LOCKED && from == CHECKPOINTED) rc = OPERATING_SYSTEM;
    else write_state(pid, to, poisoned);
  } else if (from == CHECKPOINTED && pid_exists(pid)) {
    /* A restore that failed leaves the process checkpointed and unable to restore again. */
    read_state(pid, &state, &poisoned);
    if (state == CHECKPOINTED) write_state(pid, state, 1);
  }
  log_call(op, pid, rc);
  return rc;
}

/* The args structs are 64 bytes; Lock's starts with a u32 timeoutMs, which the fake ignores. */
int cuCheckpointProcessLock(int pid, void *args) { return transition("lock", pid, args, RUNNING, LOCKED); }

int cuCheckpointProcessCheckpoint(int pid, void *args) {
  return transition("checkpoint", pid, args, LOCKED, CHECKPOINTED);
}

int cuCheckpointProcessRestore(int pid, void *args) {
  return transition("restore", pid, args, CHECKPOINTED, LOCKED);
}

int cuCheckpointProcessUnlock(int pid, void *args) { return transition("unlock", pid, args, LOCKED, RUNNING); }

#ifndef FAKE_CUDA_NO_ERROR_NAMES
/* Only the codes the fake can produce plus the common ones; others are "not found" (1). */
static const struct {
  int code;
  const char *name, *text;
} ERRORS[] = {
    {0, "CUDA_SUCCESS", "no error"},
    {1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {304, "CUDA_ERROR_OPERATING_SYSTEM", "OS call failed or operation not supported on this OS"},
    {401, "CUDA_ERROR_ILLEGAL_STATE", "the operation cannot be performed in the present state"},
    {999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

static int lookup(int code, const char **out, int text) {
  if (!out) return INVALID_VALUE;
  for (size_t i = 0; i < sizeof ERRORS / sizeof ERRORS[0]; i++) {
    if (ERRORS[i].code == code) {
      *out = text ? ERRORS[i].text : ERRORS[i].name;
      return SUCCESS;
    }
  }
  *out = NULL;
  return INVALID_VALUE;
}

int cuGetErrorName(int code, const char **name) { return lookup(code, name, 0); }
int cuGetErrorString(int code, const char **text) { return lookup(code, text, 1); }
#endif
