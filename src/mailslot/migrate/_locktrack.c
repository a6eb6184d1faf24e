/* The hot path of mailslot.migrate.locks in C: a tracked lock's acquire and release.
 *
 * mailslot.migrate.locks works without this module (its pure-Python twin is the reference, and
 * the tests run against both); with it, an uncontended acquisition costs a few tens of
 * nanoseconds more than the real lock instead of a few hundred. Everything that is not the hot
 * path stays in Python and is called from here: an order edge never seen before
 * (LockProfiler._order, ._order_instances), a contended acquisition (LockProfiler._wait), a
 * release out of LIFO order.
 *
 * ClassCore holds a lock class's counters that the hot path updates; TrackedCore is one tracked
 * lock. Python subclasses (_LockClass, _Tracked, _TrackedRLock) add the rest. Every function
 * here runs with the GIL held, like the Python code it replaces.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <time.h>

typedef struct {
    PyObject_HEAD
    PyObject *profiler;
    PyObject *after; /* set of classes taken after this one */
    char order;
    long long acquisitions;
    long long failed;
    long long hold_mask;
    long long hold_total;
    long long hold_samples;
    long long hold_max;
} ClassCore;

typedef struct {
    PyObject_HEAD
    PyObject *inner;
    ClassCore *cls;
    PyObject *holder; /* the held list of the owning thread, or NULL when free */
    PyObject *next;   /* serials of same-class locks taken while this one was held, or NULL */
    PyObject *serial;
    long long t0;
    PyObject *acq; /* inner.acquire */
    PyObject *rel; /* inner.release */
    PyObject *weakrefs;
} TrackedCore;

static PyTypeObject ClassCoreType;
static PyTypeObject TrackedCoreType;

static PyObject *held_key;     /* the key of the held list in each thread's state dict */
static PyObject *held_factory; /* makes a thread's held list: _Held(ident) */
static PyObject *str_order, *str_order_instances, *str_wait, *str_remove;

static long long
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* what time.perf_counter_ns reads on Linux */
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* The calling thread's held list (a borrowed reference), made on first use. */
static PyObject *
get_held(void)
{
    PyObject *d = PyThreadState_GetDict();
    if (d == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no thread state dict");
        return NULL;
    }
    PyObject *held = PyDict_GetItemWithError(d, held_key);
    if (held != NULL || PyErr_Occurred()) {
        return held;
    }
    if (held_factory == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_locktrack.configure() was not called");
        return NULL;
    }
    PyObject *ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    if (ident == NULL) {
        return NULL;
    }
    held = PyObject_CallOneArg(held_factory, ident);
    Py_DECREF(ident);
    if (held == NULL) {
        return NULL;
    }
    if (!PyList_Check(held)) {
        Py_DECREF(held);
        PyErr_SetString(PyExc_TypeError, "the held factory must make a list");
        return NULL;
    }
    int failed = PyDict_SetItem(d, held_key, held);
    Py_DECREF(held); /* the dict keeps it */
    return failed ? NULL : held;
}

static PyObject *
locktrack_held(PyObject *module, PyObject *unused)
{
    return Py_XNewRef(get_held());
}

static PyObject *
locktrack_configure(PyObject *module, PyObject *factory)
{
    Py_XSETREF(held_factory, Py_NewRef(factory));
    Py_RETURN_NONE;
}

/* ---- ClassCore ------------------------------------------------------------------------------ */

static int
ClassCore_traverse(ClassCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->profiler);
    Py_VISIT(self->after);
    return 0;
}

static int
ClassCore_clear(ClassCore *self)
{
    Py_CLEAR(self->profiler);
    Py_CLEAR(self->after);
    return 0;
}

static void
ClassCore_dealloc(ClassCore *self)
{
    PyObject_GC_UnTrack(self);
    ClassCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef ClassCore_members[] = {
    {"profiler", T_OBJECT, offsetof(ClassCore, profiler), 0, NULL},
    {"after", T_OBJECT, offsetof(ClassCore, after), 0, NULL},
    {"order", T_BOOL, offsetof(ClassCore, order), 0, NULL},
    {"acquisitions", T_LONGLONG, offsetof(ClassCore, acquisitions), 0, NULL},
    {"failed", T_LONGLONG, offsetof(ClassCore, failed), 0, NULL},
    {"hold_mask", T_LONGLONG, offsetof(ClassCore, hold_mask), 0, NULL},
    {"hold_total", T_LONGLONG, offsetof(ClassCore, hold_total), 0, NULL},
    {"hold_samples", T_LONGLONG, offsetof(ClassCore, hold_samples), 0, NULL},
    {"hold_max", T_LONGLONG, offsetof(ClassCore, hold_max), 0, NULL},
    {NULL},
};

static PyTypeObject ClassCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mailslot.migrate._locktrack.ClassCore",
    .tp_basicsize = sizeof(ClassCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The counters of a lock class that the hot path updates.",
    .tp_new = PyType_GenericNew,
    .tp_traverse = (traverseproc)ClassCore_traverse,
    .tp_clear = (inquiry)ClassCore_clear,
    .tp_dealloc = (destructor)ClassCore_dealloc,
    .tp_members = ClassCore_members,
};

/* ---- TrackedCore ---------------------------------------------------------------------------- */

static int
TrackedCore_init(TrackedCore *self, PyObject *args, PyObject *kwds)
{
    PyObject *cls, *inner;
    if (!PyArg_ParseTuple(args, "O!O:TrackedCore", &ClassCoreType, &cls, &inner)) {
        return -1;
    }
    PyObject *acq = PyObject_GetAttrString(inner, "acquire");
    if (acq == NULL) {
        return -1;
    }
    PyObject *rel = PyObject_GetAttrString(inner, "release");
    if (rel == NULL) {
        Py_DECREF(acq);
        return -1;
    }
    Py_XSETREF(self->inner, Py_NewRef(inner));
    Py_XSETREF(self->cls, (ClassCore *)Py_NewRef(cls));
    Py_XSETREF(self->acq, acq);
    Py_XSETREF(self->rel, rel);
    Py_CLEAR(self->holder);
    Py_CLEAR(self->next);
    self->t0 = 0;
    return 0;
}

static int
TrackedCore_traverse(TrackedCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->inner);
    Py_VISIT(self->cls);
    Py_VISIT(self->holder);
    Py_VISIT(self->next);
    Py_VISIT(self->serial);
    Py_VISIT(self->acq);
    Py_VISIT(self->rel);
    return 0;
}

static int
TrackedCore_clear(TrackedCore *self)
{
    Py_CLEAR(self->inner);
    Py_CLEAR(self->cls);
    Py_CLEAR(self->holder);
    Py_CLEAR(self->next);
    Py_CLEAR(self->serial);
    Py_CLEAR(self->acq);
    Py_CLEAR(self->rel);
    return 0;
}

static void
TrackedCore_dealloc(TrackedCore *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakrefs != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    TrackedCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The order checks of an acquisition that may wait, as _PyTrackedCore.acquire makes them. */
static int
check_order(TrackedCore *self, PyObject *held)
{
    ClassCore *cls = self->cls;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(held); i++) {
        PyObject *h = PyList_GET_ITEM(held, i);
        if (!PyObject_TypeCheck(h, &TrackedCoreType)) {
            continue;
        }
        Py_INCREF(h); /* the callbacks below run Python code */
        TrackedCore *ht = (TrackedCore *)h;
        PyObject *r = NULL;
        if (ht->cls == cls) {
            int seen = 0;
            if (ht->next != NULL && ht->next != Py_None && self->serial != NULL) {
                seen = PySet_Contains(ht->next, self->serial);
                if (seen < 0) {
                    Py_DECREF(h);
                    return -1;
                }
            }
            if (!seen) {
                r = PyObject_CallMethodObjArgs(
                    cls->profiler, str_order_instances, h, (PyObject *)self, NULL);
                if (r == NULL) {
                    Py_DECREF(h);
                    return -1;
                }
            }
        }
        else if (ht->cls != NULL && ht->cls->after != NULL) {
            int known = PySet_Contains(ht->cls->after, (PyObject *)cls);
            if (known < 0) {
                Py_DECREF(h);
                return -1;
            }
            if (!known) {
                r = PyObject_CallMethodObjArgs(
                    cls->profiler, str_order, h, (PyObject *)self, NULL);
                if (r == NULL) {
                    Py_DECREF(h);
                    return -1;
                }
            }
        }
        Py_XDECREF(r);
        Py_DECREF(h);
    }
    return 0;
}

static PyObject *
do_acquire(TrackedCore *self, int blocking, PyObject *timeout_obj, double timeout)
{
    ClassCore *cls = self->cls;
    if (cls == NULL || self->acq == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tracked lock not initialised");
        return NULL;
    }
    if (timeout != -1) {
        if (!blocking) {
            PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
            return NULL;
        }
        if (timeout < 0) {
            PyErr_SetString(PyExc_ValueError, "timeout value must be positive");
            return NULL;
        }
    }
    PyObject *held = get_held();
    if (held == NULL) {
        return NULL;
    }
    Py_INCREF(held);
    if (PyList_GET_SIZE(held) && blocking && cls->order && check_order(self, held) < 0) {
        Py_DECREF(held);
        return NULL;
    }
    PyObject *no = Py_False;
    PyObject *got = PyObject_Vectorcall(self->acq, &no, 1, NULL);
    if (got == NULL) {
        Py_DECREF(held);
        return NULL;
    }
    int ok = (got == Py_True);
    Py_DECREF(got);
    if (!ok && blocking) {
        PyObject *t = timeout_obj != NULL ? Py_NewRef(timeout_obj) : PyFloat_FromDouble(-1.0);
        if (t == NULL) {
            Py_DECREF(held);
            return NULL;
        }
        PyObject *waited = PyObject_CallMethodObjArgs(
            cls->profiler, str_wait, (PyObject *)self, held, t, NULL);
        Py_DECREF(t);
        if (waited == NULL) {
            Py_DECREF(held);
            return NULL;
        }
        ok = PyObject_IsTrue(waited);
        Py_DECREF(waited);
        if (ok < 0) {
            Py_DECREF(held);
            return NULL;
        }
    }
    if (!ok) {
        cls->failed++;
        Py_DECREF(held);
        Py_RETURN_FALSE;
    }
    if (PyList_Append(held, (PyObject *)self) < 0) {
        Py_DECREF(held);
        return NULL;
    }
    Py_XSETREF(self->holder, held); /* the reference taken above */
    cls->acquisitions++;
    self->t0 = (cls->acquisitions & cls->hold_mask) ? 0 : now_ns();
    Py_RETURN_TRUE;
}

static PyObject *
TrackedCore_acquire(TrackedCore *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *blocking_obj = nargs > 0 ? args[0] : NULL;
    PyObject *timeout_obj = nargs > 1 ? args[1] : NULL;
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "acquire() takes at most 2 arguments");
        return NULL;
    }
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *name = PyTuple_GET_ITEM(kwnames, i);
            PyObject *value = args[nargs + i];
            if (PyUnicode_CompareWithASCIIString(name, "blocking") == 0 && blocking_obj == NULL) {
                blocking_obj = value;
            }
            else if (PyUnicode_CompareWithASCIIString(name, "timeout") == 0 &&
                     timeout_obj == NULL) {
                timeout_obj = value;
            }
            else {
                PyErr_Format(PyExc_TypeError, "acquire() got an unexpected keyword argument %R",
                             name);
                return NULL;
            }
        }
    }
    int blocking = 1;
    if (blocking_obj != NULL) {
        blocking = PyObject_IsTrue(blocking_obj);
        if (blocking < 0) {
            return NULL;
        }
    }
    double timeout = -1;
    if (timeout_obj != NULL) {
        timeout = PyFloat_AsDouble(timeout_obj);
        if (timeout == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    return do_acquire(self, blocking, timeout_obj, timeout);
}

static PyObject *
TrackedCore_enter(TrackedCore *self, PyObject *unused)
{
    return do_acquire(self, 1, NULL, -1);
}

static PyObject *
TrackedCore_release(TrackedCore *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (self->rel == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tracked lock not initialised");
        return NULL;
    }
    PyObject *held = self->holder;
    if (held == NULL || held == Py_None) {
        return PyObject_CallNoArgs(self->rel); /* raises the real "release unlocked lock" */
    }
    long long t0 = self->t0;
    long long dt = t0 ? now_ns() - t0 : 0;
    self->holder = NULL; /* its reference is ours now */
    PyObject *r = PyObject_CallNoArgs(self->rel);
    if (r == NULL) {
        Py_DECREF(held);
        return NULL;
    }
    Py_DECREF(r);
    /* The rest touches only this thread's list and the class counters: done after the release,
     * so the instrumentation does not lengthen the critical section. */
    Py_ssize_t n = PyList_GET_SIZE(held);
    if (n && PyList_GET_ITEM(held, n - 1) == (PyObject *)self) {
        if (PyList_SetSlice(held, n - 1, n, NULL) < 0) {
            Py_DECREF(held);
            return NULL;
        }
    }
    else {
        /* out of LIFO order, or by another thread: find it in its holder's list */
        PyObject *removed = PyObject_CallMethodOneArg(held, str_remove, (PyObject *)self);
        if (removed == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_ValueError)) {
                Py_DECREF(held);
                return NULL;
            }
            PyErr_Clear();
        }
        Py_XDECREF(removed);
    }
    Py_DECREF(held);
    if (t0) {
        ClassCore *cls = self->cls;
        cls->hold_total += dt;
        cls->hold_samples++;
        if (dt > cls->hold_max) {
            cls->hold_max = dt;
        }
    }
    Py_RETURN_NONE;
}

static PyMethodDef TrackedCore_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))TrackedCore_acquire,
     METH_FASTCALL | METH_KEYWORDS, "Take the lock (tracked)."},
    {"release", (PyCFunction)(void (*)(void))TrackedCore_release, METH_FASTCALL,
     "Give the lock back (tracked)."},
    {"__enter__", (PyCFunction)TrackedCore_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))TrackedCore_release, METH_FASTCALL, NULL},
    {NULL},
};

static PyMemberDef TrackedCore_members[] = {
    {"_inner", T_OBJECT, offsetof(TrackedCore, inner), READONLY, NULL},
    {"_cls", T_OBJECT, offsetof(TrackedCore, cls), READONLY, NULL},
    {"_holder", T_OBJECT, offsetof(TrackedCore, holder), 0, NULL},
    {"_next", T_OBJECT, offsetof(TrackedCore, next), 0, NULL},
    {"_serial", T_OBJECT, offsetof(TrackedCore, serial), 0, NULL},
    {"_t0", T_LONGLONG, offsetof(TrackedCore, t0), 0, NULL},
    {NULL},
};

static PyTypeObject TrackedCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mailslot.migrate._locktrack.TrackedCore",
    .tp_basicsize = sizeof(TrackedCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A tracked lock's acquire and release.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)TrackedCore_init,
    .tp_traverse = (traverseproc)TrackedCore_traverse,
    .tp_clear = (inquiry)TrackedCore_clear,
    .tp_dealloc = (destructor)TrackedCore_dealloc,
    .tp_methods = TrackedCore_methods,
    .tp_members = TrackedCore_members,
    .tp_weaklistoffset = offsetof(TrackedCore, weakrefs),
};

static PyMethodDef locktrack_functions[] = {
    {"held", locktrack_held, METH_NOARGS, "The calling thread's list of held tracked locks."},
    {"configure", locktrack_configure, METH_O, "Set the factory of a thread's held list."},
    {NULL},
};

static struct PyModuleDef locktrack_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mailslot.migrate._locktrack",
    .m_doc = "The hot path of mailslot.migrate.locks (optional; see locks.py).",
    .m_size = -1,
    .m_methods = locktrack_functions,
};

PyMODINIT_FUNC
PyInit__locktrack(void)
{
    if (PyType_Ready(&ClassCoreType) < 0 || PyType_Ready(&TrackedCoreType) < 0) {
        return NULL;
    }
    held_key = PyUnicode_InternFromString("mailslot.migrate._locktrack.held");
    str_order = PyUnicode_InternFromString("_order");
    str_order_instances = PyUnicode_InternFromString("_order_instances");
    str_wait = PyUnicode_InternFromString("_wait");
    str_remove = PyUnicode_InternFromString("remove");
    if (!held_key || !str_order || !str_order_instances || !str_wait || !str_remove) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&locktrack_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "ClassCore", (PyObject *)&ClassCoreType) < 0 ||
        PyModule_AddObjectRef(m, "TrackedCore", (PyObject *)&TrackedCoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
