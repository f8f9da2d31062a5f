/*
 * Batch decoder for rtcap records: the compiled twin of the fast decoders that
 * runtime/driver/schema.py generates in Python (plus the ordered loads and stores the
 * BPF ring buffer's consumer needs, at the end).
 *
 * Why it exists: turning a record into an Event is most of what a replay or a live
 * capture costs per event in Python (bench/bench_replay.py). Everything that defines
 * what a record means stays in Python and is handed over at construction: the event
 * types, their param names and kinds, the post-steps (execve's argv split, connect's and
 * accept's SocketTuple), the syscall names and which types the engine wants as "lite"
 * tuples. This file only reads the record header, through the same generated header
 * the kernel module and the probes write it with (driver/include/rtcap_schema.h), and
 * Python refuses to use a build whose SCHEMA_HASH differs from the generated Python
 * tables' (a stale build after a schema change), so the decoders cannot drift silently.
 *
 * The contract is the Python fast path's: decode the common record, and stop at anything
 * unusual (an empty fixed param, lengths that do not add up, an unknown type) by returning
 * its offset, so the caller's careful path decides with its precise errors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdint.h>
#include <string.h>

#include "rtcap_schema.h"

#define HDR_SIZE RTCAP_HDR_SIZE
#define COMM_LEN ((Py_ssize_t)sizeof(((struct rtcap_event_hdr *)0)->comm))
#define OFF_TS RTCAP_HDR_OFF_TS
#define OFF_CGROUP RTCAP_HDR_OFF_CGROUP_ID
#define OFF_RET RTCAP_HDR_OFF_RET
#define OFF_LEN RTCAP_HDR_OFF_LEN
#define OFF_TYPE RTCAP_HDR_OFF_TYPE
#define OFF_NPARAMS RTCAP_HDR_OFF_NPARAMS
#define OFF_NR RTCAP_HDR_OFF_SYSCALL_NR
#define OFF_CPU RTCAP_HDR_OFF_CPU
#define OFF_PID RTCAP_HDR_OFF_PID
#define OFF_TID RTCAP_HDR_OFF_TID
#define OFF_PPID RTCAP_HDR_OFF_PPID
#define OFF_UID RTCAP_HDR_OFF_UID
#define OFF_GID RTCAP_HDR_OFF_GID
#define OFF_COMM RTCAP_HDR_OFF_COMM

/* Param kinds, as schema.py's `_C_PARAM_CODE` maps the schema's param types onto them. */
enum { P_U32 = 1, P_U64 = 2, P_S32 = 3, P_S64 = 4, P_TEXT = 5, P_ARGV = 6, P_BYTES = 7 };

#define MAX_PARAMS 32
_Static_assert(RTCAP_MAX_NPARAMS <= MAX_PARAMS, "an event has more params than MAX_PARAMS");

/* The Event slots, in the order the decoder fills them. */
static const char *const EVENT_SLOTS[] = {
    "ts", "cpu", "type", "syscall_nr", "res", "pid", "tid",
    "ppid", "uid", "gid", "comm", "cgroup_id", "params", "raw_args",
};
enum {
    S_TS, S_CPU, S_TYPE, S_NR, S_RES, S_PID, S_TID,
    S_PPID, S_UID, S_GID, S_COMM, S_CGROUP, S_PARAMS, S_RAW_ARGS, N_SLOTS
};

/* The object last made for a value, handed out again while the value repeats: a capture's
 * records mostly come from a few threads doing a few things, so ids, flags and paths
 * repeat record after record, and an int or str made once (immutable, so sharing is
 * invisible) saves an allocation now and a deallocation when the Event goes. */
typedef struct {
    uint64_t raw;
    PyObject *obj;
} IntCache;

/* Texts up to this long are cached (longer ones are rarely repeated paths). */
#define TEXT_CACHE_MAX 256

typedef struct {
    Py_ssize_t len;
    PyObject *obj;
    unsigned char raw[TEXT_CACHE_MAX];
} TextCache;

typedef struct {
    int known;
    int nparams;
    int codes[MAX_PARAMS];
    PyObject *names[MAX_PARAMS]; /* borrowed: the spec tuple kept in `specs` owns them */
    PyObject *ret_name;
    PyObject *ev_name;
    PyObject *post;      /* callable(params) or NULL */
    int is_generic;
    int lite_kind;       /* -1: always a full Event */
    int lite_n;
    int lite_idx[MAX_PARAMS];
    PyObject *lite_kind_obj;
    PyObject *lite_nrs;  /* frozenset of syscall numbers decoded lite, or NULL */
    IntCache nr;                 /* the syscall number's int */
    IntCache ints[MAX_PARAMS];   /* integer params' ints */
    TextCache *texts[MAX_PARAMS]; /* text params' strs (allocated at first use) */
} TypeSpec;

typedef struct {
    PyObject_HEAD
    PyTypeObject *event_type;
    Py_ssize_t slot_offset[N_SLOTS];
    long long epoch_ns;
    PyObject *names_by_nr; /* tuple: nr -> str or None */
    PyObject *comms;       /* dict: raw 16-byte comm -> str, shared with the Python decoder */
    Py_ssize_t comm_max;
    PyObject *specs;       /* the spec tuple, owning every borrowed reference above */
    TypeSpec *types;
    Py_ssize_t ntypes;
    PyObject *empty_tuple;
    /* One-entry cache in front of `comms`: consecutive records usually share a comm. */
    unsigned char last_comm_raw[COMM_LEN];
    PyObject *last_comm;
    /* The header's ids: a run of records from one thread shares them. */
    IntCache tid, pid, ppid, uid, gid, cgroup;
} FrameDecoder;

static inline uint16_t rd16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t rd32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline int32_t rd32s(const unsigned char *p) { int32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t rd64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline int64_t rd64s(const unsigned char *p) { int64_t v; memcpy(&v, p, 8); return v; }

/* A new reference to the int for `raw` (read as `code` says), from the cache while the
 * value repeats. */
static PyObject *cached_int(IntCache *c, uint64_t raw, int code) {
    if (c->obj != NULL && c->raw == raw)
        return Py_NewRef(c->obj);
    PyObject *v;
    switch (code) {
    case P_S32: v = PyLong_FromLong((int32_t)(uint32_t)raw); break;
    case P_S64: v = PyLong_FromLongLong((int64_t)raw); break;
    default: v = PyLong_FromUnsignedLongLong(raw);
    }
    if (v == NULL)
        return NULL;
    Py_XSETREF(c->obj, Py_NewRef(v));
    c->raw = raw;
    return v;
}

static int fixed_size(int code) {
    switch (code) {
    case P_U32: case P_S32: return 4;
    case P_U64: case P_S64: return 8;
    default: return 0;
    }
}

static void frame_decoder_dealloc(FrameDecoder *self) {
    if (self->types != NULL) {
        for (Py_ssize_t i = 0; i < self->ntypes; i++) {
            TypeSpec *t = &self->types[i];
            Py_XDECREF(t->lite_kind_obj);
            Py_XDECREF(t->nr.obj);
            for (int j = 0; j < MAX_PARAMS; j++) {
                Py_XDECREF(t->ints[j].obj);
                if (t->texts[j] != NULL) {
                    Py_XDECREF(t->texts[j]->obj);
                    PyMem_Free(t->texts[j]);
                }
            }
        }
        PyMem_Free(self->types);
    }
    Py_XDECREF(self->event_type);
    Py_XDECREF(self->names_by_nr);
    Py_XDECREF(self->comms);
    Py_XDECREF(self->specs);
    Py_XDECREF(self->empty_tuple);
    Py_XDECREF(self->last_comm);
    IntCache *ids[] = {&self->tid, &self->pid, &self->ppid, &self->uid, &self->gid,
                       &self->cgroup};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        Py_XDECREF(ids[i]->obj);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Where each Event slot lives: the fast path stores straight into the instance, as the
 * Python decoder does with object.__new__ and slot assignments, skipping __init__. */
static int find_slot_offsets(FrameDecoder *self) {
    for (int i = 0; i < N_SLOTS; i++) {
        PyObject *descr = PyObject_GetAttrString((PyObject *)self->event_type, EVENT_SLOTS[i]);
        if (descr == NULL)
            return -1;
        if (!Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            Py_DECREF(descr);
            PyErr_Format(PyExc_TypeError, "Event.%s is not a __slots__ member", EVENT_SLOTS[i]);
            return -1;
        }
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type != T_OBJECT_EX) {
            Py_DECREF(descr);
            PyErr_Format(PyExc_TypeError, "Event.%s is not an object slot", EVENT_SLOTS[i]);
            return -1;
        }
        self->slot_offset[i] = member->offset;
        Py_DECREF(descr);
    }
    return 0;
}

/* One type's spec: (ev_name, ret_name, names, codes, post, is_generic, lite) with lite
 * None or (kind, param indices, frozenset of syscall numbers). */
static int load_spec(TypeSpec *t, PyObject *spec) {
    PyObject *names, *codes, *post, *lite;
    int is_generic;
    if (!PyArg_ParseTuple(spec, "UUO!O!OpO", &t->ev_name, &t->ret_name, &PyTuple_Type, &names,
                          &PyTuple_Type, &codes, &post, &is_generic, &lite))
        return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    if (n > MAX_PARAMS || PyTuple_GET_SIZE(codes) != n) {
        PyErr_SetString(PyExc_ValueError, "bad param tables");
        return -1;
    }
    t->nparams = (int)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        t->names[i] = PyTuple_GET_ITEM(names, i);
        long code = PyLong_AsLong(PyTuple_GET_ITEM(codes, i));
        if (code < P_U32 || code > P_BYTES) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "unknown param code %ld", code);
            return -1;
        }
        t->codes[i] = (int)code;
    }
    t->post = post == Py_None ? NULL : post;
    t->is_generic = is_generic;
    t->lite_kind = -1;
    if (lite != Py_None) {
        PyObject *kind, *idx, *nrs;
        if (!PyArg_ParseTuple(lite, "O!O!O!", &PyLong_Type, &kind, &PyTuple_Type, &idx,
                              &PyFrozenSet_Type, &nrs))
            return -1;
        if (PyTuple_GET_SIZE(idx) > MAX_PARAMS) {
            PyErr_SetString(PyExc_ValueError, "too many lite params");
            return -1;
        }
        t->lite_kind = (int)PyLong_AsLong(kind);
        t->lite_n = (int)PyTuple_GET_SIZE(idx);
        for (int i = 0; i < t->lite_n; i++) {
            long at = PyLong_AsLong(PyTuple_GET_ITEM(idx, i));
            if (at < 0 || at >= n) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "lite param index out of range");
                return -1;
            }
            t->lite_idx[i] = (int)at;
        }
        Py_INCREF(kind);
        t->lite_kind_obj = kind;
        t->lite_nrs = nrs;
    }
    t->known = 1;
    return 0;
}

static int frame_decoder_init(FrameDecoder *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"event_type", "epoch_ns", "names_by_nr", "comms", "comm_max",
                             "specs", NULL};
    PyObject *event_type, *names, *comms, *specs;
    long long epoch;
    Py_ssize_t comm_max;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!LO!O!nO!", kwlist, &PyType_Type,
                                     &event_type, &epoch, &PyTuple_Type, &names, &PyDict_Type,
                                     &comms, &comm_max, &PyTuple_Type, &specs))
        return -1;
    if (self->types != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FrameDecoder is already initialised");
        return -1;
    }
    Py_INCREF(event_type);
    self->event_type = (PyTypeObject *)event_type;
    self->epoch_ns = epoch;
    Py_INCREF(names);
    self->names_by_nr = names;
    Py_INCREF(comms);
    self->comms = comms;
    self->comm_max = comm_max;
    Py_INCREF(specs);
    self->specs = specs;
    self->empty_tuple = PyTuple_New(0);
    if (self->empty_tuple == NULL || find_slot_offsets(self) < 0)
        return -1;
    self->ntypes = PyTuple_GET_SIZE(specs);
    self->types = PyMem_Calloc((size_t)(self->ntypes ? self->ntypes : 1), sizeof(TypeSpec));
    if (self->types == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < self->ntypes; i++) {
        PyObject *spec = PyTuple_GET_ITEM(specs, i);
        if (spec != Py_None && load_spec(&self->types[i], spec) < 0)
            return -1;
    }
    return 0;
}

static PyObject *text_value(const unsigned char *p, Py_ssize_t len) {
    /* One trailing NUL terminates the text; it is not part of it. */
    if (len > 0 && p[len - 1] == 0)
        len--;
    return PyUnicode_DecodeUTF8((const char *)p, len, "replace");
}

static PyObject *cached_text(TypeSpec *t, int i, const unsigned char *p, Py_ssize_t len) {
    if (len > TEXT_CACHE_MAX)
        return text_value(p, len);
    TextCache *c = t->texts[i];
    if (c != NULL && c->obj != NULL && c->len == len && memcmp(c->raw, p, (size_t)len) == 0)
        return Py_NewRef(c->obj);
    PyObject *v = text_value(p, len);
    if (v == NULL)
        return NULL;
    if (c == NULL) {
        c = t->texts[i] = PyMem_Calloc(1, sizeof(TextCache));
        if (c == NULL)
            return v;  /* no cache, still the right value */
    }
    memcpy(c->raw, p, (size_t)len);
    c->len = len;
    Py_XSETREF(c->obj, Py_NewRef(v));
    return v;
}

static PyObject *argv_value(const unsigned char *p, Py_ssize_t len) {
    /* Decode once, then split on NUL (see schema._argv: same result as per-part decoding). */
    PyObject *text = PyUnicode_DecodeUTF8((const char *)p, len, "replace");
    if (text == NULL)
        return NULL;
    PyObject *sep = PyUnicode_FromStringAndSize("\0", 1);
    if (sep == NULL) {
        Py_DECREF(text);
        return NULL;
    }
    PyObject *parts = PyUnicode_Split(text, sep, -1);
    Py_DECREF(sep);
    Py_DECREF(text);
    if (parts == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(parts);
    if (n > 0 && PyUnicode_GET_LENGTH(PyList_GET_ITEM(parts, n - 1)) == 0 &&
        PyList_SetSlice(parts, n - 1, n, NULL) < 0) {
        Py_DECREF(parts);
        return NULL;
    }
    return parts;
}

static PyObject *comm_value(FrameDecoder *self, const unsigned char *raw) {
    if (self->last_comm != NULL && memcmp(self->last_comm_raw, raw, COMM_LEN) == 0) {
        Py_INCREF(self->last_comm);
        return self->last_comm;
    }
    PyObject *key = PyBytes_FromStringAndSize((const char *)raw, COMM_LEN);
    if (key == NULL)
        return NULL;
    PyObject *comm = PyDict_GetItemWithError(self->comms, key);
    if (comm != NULL) {
        Py_INCREF(comm);
    } else if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    } else {
        const unsigned char *nul = memchr(raw, 0, COMM_LEN);
        comm = PyUnicode_DecodeUTF8((const char *)raw, nul ? nul - raw : COMM_LEN, "replace");
        if (comm == NULL || (PyDict_GET_SIZE(self->comms) < self->comm_max &&
                             PyDict_SetItem(self->comms, key, comm) < 0)) {
            Py_XDECREF(comm);
            Py_DECREF(key);
            return NULL;
        }
    }
    Py_DECREF(key);
    memcpy(self->last_comm_raw, raw, COMM_LEN);
    Py_INCREF(comm);
    Py_XSETREF(self->last_comm, comm);
    return comm;
}

static PyObject *syscall_name(FrameDecoder *self, TypeSpec *t, int32_t nr) {
    if (nr < 0) {
        Py_INCREF(t->ev_name);
        return t->ev_name;
    }
    if (nr < PyTuple_GET_SIZE(self->names_by_nr)) {
        PyObject *name = PyTuple_GET_ITEM(self->names_by_nr, nr);
        if (name != Py_None) {
            Py_INCREF(name);
            return name;
        }
    }
    return PyUnicode_FromFormat("syscall_%d", (int)nr);
}

#define STOP (-1)  /* the record needs the careful path */
#define FAIL (-2)  /* a Python exception is set */

/* One record at `off`: appends an Event (or a lite tuple) to `out` and returns the next
 * record's offset, or STOP / FAIL. */
static Py_ssize_t decode_one(FrameDecoder *self, const unsigned char *buf, Py_ssize_t off,
                             Py_ssize_t end, PyObject *out) {
    const unsigned char *h = buf + off;
    uint16_t type_id = rd16(h + OFF_TYPE);
    if (type_id >= self->ntypes || !self->types[type_id].known)
        return STOP;
    TypeSpec *t = &self->types[type_id];
    uint32_t length = rd32(h + OFF_LEN);
    int n = t->nparams;
    if (rd16(h + OFF_NPARAMS) != n || length < HDR_SIZE || (Py_ssize_t)length > end - off)
        return STOP;
    Py_ssize_t pos = off + HDR_SIZE;
    Py_ssize_t rec_end = off + length;
    if (pos + 2 * n > rec_end)
        return STOP;
    uint16_t lens[MAX_PARAMS];
    for (int i = 0; i < n; i++) {
        lens[i] = rd16(buf + pos + 2 * i);
        int size = fixed_size(t->codes[i]);
        if (size && lens[i] != size)
            return STOP;
    }
    pos += 2 * n;
    Py_ssize_t data = 0;
    for (int i = 0; i < n; i++)
        data += lens[i];
    if (pos + data > rec_end)
        return STOP;

    PyObject *vals[MAX_PARAMS];
    int made = 0;
    for (int i = 0; i < n; i++, made++) {
        const unsigned char *p = buf + pos;
        Py_ssize_t len = lens[i];
        PyObject *v;
        switch (t->codes[i]) {
        case P_U32: case P_S32: v = cached_int(&t->ints[i], rd32(p), t->codes[i]); break;
        case P_U64: case P_S64: v = cached_int(&t->ints[i], rd64(p), t->codes[i]); break;
        case P_TEXT: v = len ? cached_text(t, i, p, len) : Py_NewRef(Py_None); break;
        case P_ARGV: v = len ? argv_value(p, len) : Py_NewRef(Py_None); break;
        default: v = len ? PyBytes_FromStringAndSize((const char *)p, len) : Py_NewRef(Py_None);
        }
        if (v == NULL)
            goto fail_vals;
        vals[i] = v;
        pos += len;
    }

    int32_t nr = rd32s(h + OFF_NR);
    PyObject *ret = PyLong_FromLongLong(rd64s(h + OFF_RET));
    PyObject *tid = cached_int(&self->tid, rd32(h + OFF_TID), P_U32);
    PyObject *pid = cached_int(&self->pid, rd32(h + OFF_PID), P_U32);
    PyObject *ppid = cached_int(&self->ppid, rd32(h + OFF_PPID), P_U32);
    PyObject *uid = cached_int(&self->uid, rd32(h + OFF_UID), P_U32);
    PyObject *gid = cached_int(&self->gid, rd32(h + OFF_GID), P_U32);
    if (!ret || !tid || !pid || !ppid || !uid || !gid)
        goto fail_ids;

    if (t->lite_kind >= 0) {
        int lite = nr < 0;
        if (!lite) {
            PyObject *nr_obj = cached_int(&t->nr, (uint32_t)nr, P_S32);
            if (nr_obj == NULL)
                goto fail_ids;
            lite = PySet_Contains(t->lite_nrs, nr_obj);
            Py_DECREF(nr_obj);
            if (lite < 0)
                goto fail_ids;
        }
        if (lite) {
            PyObject *param;
            if (t->lite_n == 0) {
                param = Py_NewRef(Py_None);
            } else if (t->lite_n == 1) {
                param = Py_NewRef(vals[t->lite_idx[0]]);
            } else {
                param = PyTuple_New(t->lite_n);
                if (param == NULL)
                    goto fail_ids;
                for (int i = 0; i < t->lite_n; i++)
                    PyTuple_SET_ITEM(param, i, Py_NewRef(vals[t->lite_idx[i]]));
            }
            PyObject *off_obj = PyLong_FromSsize_t(off);
            if (off_obj == NULL) {
                Py_DECREF(param);
                goto fail_ids;
            }
            /* (kind, offset, tid, pid, ppid, uid, gid, res, param): see app.LiteRecord */
            PyObject *rec = PyTuple_Pack(9, t->lite_kind_obj, off_obj, tid, pid, ppid, uid, gid,
                                         ret, param);
            Py_DECREF(off_obj);
            Py_DECREF(param);
            if (rec == NULL)
                goto fail_ids;
            int appended = PyList_Append(out, rec);
            Py_DECREF(rec);
            if (appended < 0)
                goto fail_ids;
            for (int i = 0; i < n; i++)
                Py_DECREF(vals[i]);
            Py_DECREF(ret); Py_DECREF(tid); Py_DECREF(pid);
            Py_DECREF(ppid); Py_DECREF(uid); Py_DECREF(gid);
            return off + (((Py_ssize_t)length + 7) & ~(Py_ssize_t)7);
        }
    }

    PyObject *params = NULL, *raw_args = NULL;
    if (t->is_generic) {
        raw_args = PyTuple_New(n);
        if (raw_args == NULL)
            goto fail_ids;
        for (int i = 0; i < n; i++) {
            PyTuple_SET_ITEM(raw_args, i, vals[i]);
            vals[i] = NULL;
        }
        params = PyDict_New();
    } else {
        raw_args = Py_NewRef(self->empty_tuple);
        params = _PyDict_NewPresized(n + 1);  /* + the return value: no resize */
        for (int i = 0; params != NULL && i < n; i++) {
            if (PyDict_SetItem(params, t->names[i], vals[i]) < 0)
                Py_CLEAR(params);
        }
        if (params != NULL && t->post != NULL) {
            PyObject *r = PyObject_CallOneArg(t->post, params);
            if (r == NULL)
                Py_CLEAR(params);
            Py_XDECREF(r);
        }
    }
    for (int i = 0; i < n; i++)
        Py_XDECREF(vals[i]);
    made = 0;
    if (params == NULL || PyDict_SetItem(params, t->ret_name, ret) < 0) {
        Py_XDECREF(params);
        Py_DECREF(raw_args);
        goto fail_ids;
    }

    PyObject *slot[N_SLOTS];
    long long ts_epoch;
    uint64_t ts = rd64(h + OFF_TS);
    if (ts <= (uint64_t)INT64_MAX &&
        !__builtin_add_overflow((long long)ts, self->epoch_ns, &ts_epoch)) {
        slot[S_TS] = PyLong_FromLongLong(ts_epoch);
    } else {
        PyObject *a = PyLong_FromUnsignedLongLong(ts), *b = PyLong_FromLongLong(self->epoch_ns);
        slot[S_TS] = a && b ? PyNumber_Add(a, b) : NULL;
        Py_XDECREF(a);
        Py_XDECREF(b);
    }
    slot[S_CPU] = PyLong_FromUnsignedLong(rd32(h + OFF_CPU));
    slot[S_TYPE] = syscall_name(self, t, nr);
    slot[S_NR] = cached_int(&t->nr, (uint32_t)nr, P_S32);
    slot[S_RES] = ret;
    slot[S_PID] = pid;
    slot[S_TID] = tid;
    slot[S_PPID] = ppid;
    slot[S_UID] = uid;
    slot[S_GID] = gid;
    slot[S_COMM] = comm_value(self, h + OFF_COMM);
    slot[S_CGROUP] = cached_int(&self->cgroup, rd64(h + OFF_CGROUP), P_U64);
    slot[S_PARAMS] = params;
    slot[S_RAW_ARGS] = raw_args;
    PyObject *ev = NULL;
    int ok = 1;
    for (int i = 0; i < N_SLOTS; i++)
        ok &= slot[i] != NULL;
    if (ok)
        ev = self->event_type->tp_alloc(self->event_type, 0);
    if (ev == NULL) {
        for (int i = 0; i < N_SLOTS; i++)
            Py_XDECREF(slot[i]);
        return FAIL;
    }
    for (int i = 0; i < N_SLOTS; i++)
        *(PyObject **)((char *)ev + self->slot_offset[i]) = slot[i];
    /* Out of the cyclic GC's lists: an Event holds only what this function made (ints,
     * strs, its params dict of them, argv lists, SocketTuples), nothing that can lead
     * back to it, so it can never be part of a cycle. Tracked, every collection walked
     * each Event alive at the time: a frame's worth in a replay, the reorder window's
     * live (~5% of what a storm's events cost, callgrind). */
    if (PyObject_IS_GC(ev))
        PyObject_GC_UnTrack(ev);
    int appended = PyList_Append(out, ev);
    Py_DECREF(ev);
    if (appended < 0)
        return FAIL;
    return off + (((Py_ssize_t)length + 7) & ~(Py_ssize_t)7);

fail_ids:
    Py_XDECREF(ret); Py_XDECREF(tid); Py_XDECREF(pid);
    Py_XDECREF(ppid); Py_XDECREF(uid); Py_XDECREF(gid);
fail_vals:
    for (int i = 0; i < made; i++)
        Py_XDECREF(vals[i]);
    return FAIL;
}

PyDoc_STRVAR(decode_doc,
"decode(buf, start, end, out) -> offset\n\n"
"Decode the 8-byte aligned records in buf[start:end] onto the list `out` and return the\n"
"offset it stopped at: past the last whole record, or at a record the careful Python\n"
"path must take (then offset + header size <= end).");

static PyObject *frame_decoder_decode(FrameDecoder *self, PyObject *const *args,
                                      Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "decode(buf, start, end, out) takes 4 arguments");
        return NULL;
    }
    if (self->types == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "FrameDecoder is not initialised");
        return NULL;
    }
    Py_ssize_t off = PyLong_AsSsize_t(args[1]);
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    if ((off == -1 || end == -1) && PyErr_Occurred())
        return NULL;
    PyObject *out = args[3];
    if (!PyList_Check(out)) {
        PyErr_SetString(PyExc_TypeError, "out must be a list");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (end > view.len)
        end = view.len;
    if (off < 0)
        off = 0;
    const unsigned char *buf = view.buf;
    while (off + HDR_SIZE <= end) {
        Py_ssize_t next = decode_one(self, buf, off, end, out);
        if (next == FAIL) {
            PyBuffer_Release(&view);
            return NULL;
        }
        if (next == STOP)
            break;
        off = next;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(off);
}

/*
 * Ordered access to a BPF ring buffer's shared pages. The kernel producer publishes a
 * record by a release store of its header (clearing the busy bit) and of producer_pos;
 * the consumer must load both with acquire semantics before reading the record, and hand
 * the space back with a release store of consumer_pos (as libbpf's ringbuf.c does).
 * x86 orders plain loads and stores that way already; arm64 does not.
 */
static int aligned_view(PyObject *buf, PyObject *off_obj, Py_ssize_t width, int flags,
                        Py_buffer *view, Py_ssize_t *off) {
    *off = PyLong_AsSsize_t(off_obj);
    if (*off == -1 && PyErr_Occurred())
        return -1;
    if (PyObject_GetBuffer(buf, view, flags) < 0)
        return -1;
    if (*off < 0 || *off > view->len - width ||
        ((uintptr_t)((char *)view->buf + *off) % (uintptr_t)width) != 0) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_ValueError, "offset %zd is not a %zd-byte aligned word of the buffer",
                     *off, width);
        return -1;
    }
    return 0;
}

static PyObject *load_acquire(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t width) {
    Py_buffer view;
    Py_ssize_t off;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "load_acquire_u%zd(buf, offset)", 8 * width);
        return NULL;
    }
    if (aligned_view(args[0], args[1], width, PyBUF_SIMPLE, &view, &off) < 0)
        return NULL;
    void *at = (char *)view.buf + off;
    uint64_t v = width == 8 ? __atomic_load_n((uint64_t *)at, __ATOMIC_ACQUIRE)
                            : __atomic_load_n((uint32_t *)at, __ATOMIC_ACQUIRE);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong(v);
}

static PyObject *load_acquire_u64(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    return load_acquire(args, nargs, 8);
}

static PyObject *load_acquire_u32(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    return load_acquire(args, nargs, 4);
}

static PyObject *store_release_u64(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    (void)mod;
    Py_buffer view;
    Py_ssize_t off;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "store_release_u64(buf, offset, value)");
        return NULL;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(args[2]);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (aligned_view(args[0], args[1], 8, PyBUF_WRITABLE, &view, &off) < 0)
        return NULL;
    __atomic_store_n((uint64_t *)((char *)view.buf + off), (uint64_t)v, __ATOMIC_RELEASE);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"load_acquire_u64", (PyCFunction)(void (*)(void))load_acquire_u64, METH_FASTCALL,
     PyDoc_STR("load_acquire_u64(buf, offset) -> int: an acquire load of an aligned u64")},
    {"load_acquire_u32", (PyCFunction)(void (*)(void))load_acquire_u32, METH_FASTCALL,
     PyDoc_STR("load_acquire_u32(buf, offset) -> int: an acquire load of an aligned u32")},
    {"store_release_u64", (PyCFunction)(void (*)(void))store_release_u64, METH_FASTCALL,
     PyDoc_STR("store_release_u64(buf, offset, value): a release store of an aligned u64")},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef frame_decoder_methods[] = {
    {"decode", (PyCFunction)(void (*)(void))frame_decoder_decode, METH_FASTCALL, decode_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject FrameDecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "runtime.driver._fastdecode.FrameDecoder",
    .tp_doc = PyDoc_STR("Compiled batch decoder for rtcap records (see schema.Decoder)."),
    .tp_basicsize = sizeof(FrameDecoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)frame_decoder_init,
    .tp_dealloc = (destructor)frame_decoder_dealloc,
    .tp_methods = frame_decoder_methods,
};

static struct PyModuleDef fastdecode_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "runtime.driver._fastdecode",
    .m_doc = PyDoc_STR("Compiled batch decoder for rtcap records."),
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__fastdecode(void) {
    if (PyType_Ready(&FrameDecoderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastdecode_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FrameDecoderType);
    if (PyModule_AddObject(m, "FrameDecoder", (PyObject *)&FrameDecoderType) < 0 ||
        PyModule_AddObject(m, "SCHEMA_HASH",
                           PyLong_FromUnsignedLongLong(RTCAP_SCHEMA_HASH)) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PARAMS", MAX_PARAMS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    /* The slots this file fills: Python refuses the build if Event has any other. */
    PyObject *slots = PyTuple_New(N_SLOTS);
    if (slots == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    for (int i = 0; i < N_SLOTS; i++) {
        PyObject *name = PyUnicode_FromString(EVENT_SLOTS[i]);
        if (name == NULL) {
            Py_DECREF(slots);
            Py_DECREF(m);
            return NULL;
        }
        PyTuple_SET_ITEM(slots, i, name);
    }
    if (PyModule_AddObject(m, "EVENT_SLOTS", slots) < 0) {
        Py_DECREF(slots);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
