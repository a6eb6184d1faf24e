/* The runtime's hot path in C: a local tell, and the inner loop of an actor's turn.
 *
 * mailslot.runtime works without this module: core.py's pure-Python twins (_PyRefCore,
 * _PyCellCore, _PySystemCore) are the reference, and the runtime's tests run against both.
 * Only CPython's C API is used (no third-party code). Everything that is not the hot path stays in
 * Python and is called from here: a tell that cannot take the fast path (_Cell.tell_careful),
 * scheduling the dispatcher (ActorSystem._schedule_drain), a coroutine handler
 * (_Cell.start_handler_task).
 *
 * SystemCore holds what every tell reads from the actor system (the current sender, the ready
 * queue); CellCore holds an actor's mailbox and what its turn touches; RefCore is the base of
 * every ActorRef and holds a local ref's cell. Python subclasses (ActorSystem, _Cell, ActorRef)
 * add the rest. Every function here runs with the GIL held, like the Python code it replaces.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    PyObject *current; /* the ref of the actor being run, or NULL */
    PyObject *ready;   /* deque of scheduled cells */
    PyObject *drain_pending; /* a bool */
} SystemCore;

typedef struct {
    PyObject_HEAD
    PyObject *system;  /* a SystemCore */
    PyObject *queue;   /* the mailbox: a deque of (message, meta), or a CoalescingQueue */
    PyObject *receive; /* the actor's bound receive */
    PyObject *meta;    /* the sender or envelope of the message being handled */
    PyObject *sysq;    /* control work: a deque, or None */
    PyObject *turn_message; /* after a failed turn: the message being handled */
    PyObject *gate;    /* an int: a tell takes the fast path while the mailbox holds fewer */
    PyObject *turn_done; /* an int, after a failed turn: the messages it took, the failed one too */
    PyObject *scheduled; /* a bool */
} CellCore;

typedef struct {
    PyObject_HEAD
    PyObject *cell; /* a CellCore */
} RefCore;

static PyTypeObject SystemCoreType;
static PyTypeObject CellCoreType;
static PyTypeObject RefCoreType;

static PyTypeObject *deque_type;
static PyCFunction deque_append; /* deque.append's C function (METH_O) */
static PyCFunction deque_popleft; /* deque.popleft's C function (METH_NOARGS) */
static PyObject *str_append, *str_popleft, *str_tell_careful, *str_schedule_drain,
    *str_start_handler_task, *str_sender, *str_message;

/* ---- deques ------------------------------------------------------------------------------- */

static int
push(PyObject *q, PyObject *item)
{
    PyObject *r = Py_IS_TYPE(q, deque_type) ? deque_append(q, item)
                                            : PyObject_CallMethodOneArg(q, str_append, item);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static PyObject *
pop(PyObject *q)
{
    return Py_IS_TYPE(q, deque_type) ? deque_popleft(q, NULL)
                                     : PyObject_CallMethodNoArgs(q, str_popleft);
}

static Py_ssize_t
length(PyObject *q)
{
    return Py_IS_TYPE(q, deque_type) ? Py_SIZE(q) : PyObject_Length(q);
}

/* The truth of a flag (a bool); AttributeError when it was never set, as in Python. */
static int
truth(PyObject *flag, const char *name)
{
    if (flag == Py_True) {
        return 1;
    }
    if (flag == Py_False) {
        return 0;
    }
    if (flag == NULL) {
        PyErr_SetString(PyExc_AttributeError, name);
        return -1;
    }
    return PyObject_IsTrue(flag);
}

/* Find a method's C function on collections.deque, checking its calling convention. */
static PyCFunction
deque_method(const char *name, int flags)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)deque_type, name);
    if (d == NULL) {
        return NULL;
    }
    PyCFunction f = NULL;
    if (Py_IS_TYPE(d, &PyMethodDescr_Type) &&
        ((PyMethodDescrObject *)d)->d_method->ml_flags == flags) {
        f = ((PyMethodDescrObject *)d)->d_method->ml_meth;
    }
    else {
        PyErr_Format(PyExc_ImportError, "collections.deque.%s is not the expected C method", name);
    }
    Py_DECREF(d);
    return f;
}

/* ---- SystemCore --------------------------------------------------------------------------- */

static int
SystemCore_traverse(SystemCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->current);
    Py_VISIT(self->ready);
    Py_VISIT(self->drain_pending);
    return 0;
}

static int
SystemCore_clear(SystemCore *self)
{
    Py_CLEAR(self->current);
    Py_CLEAR(self->ready);
    Py_CLEAR(self->drain_pending);
    return 0;
}

static void
SystemCore_dealloc(SystemCore *self)
{
    PyObject_GC_UnTrack(self);
    Py_TRASHCAN_BEGIN(self, SystemCore_dealloc)
    SystemCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
    Py_TRASHCAN_END
}

/* Every member is T_OBJECT_EX, like a __slots__ entry, so that the interpreter specialises the
 * Python code's reads and writes of them as it does for slots. Their types are checked where the
 * hot path relies on them. */
static PyMemberDef SystemCore_members[] = {
    {"_current", T_OBJECT_EX, offsetof(SystemCore, current), 0, NULL},
    {"_ready", T_OBJECT_EX, offsetof(SystemCore, ready), 0, NULL},
    {"_drain_pending", T_OBJECT_EX, offsetof(SystemCore, drain_pending), 0, NULL},
    {NULL},
};

static PyTypeObject SystemCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mailslot.runtime._speedups.SystemCore",
    .tp_basicsize = sizeof(SystemCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "What every tell reads from an actor system.",
    .tp_new = PyType_GenericNew,
    .tp_traverse = (traverseproc)SystemCore_traverse,
    .tp_clear = (inquiry)SystemCore_clear,
    .tp_dealloc = (destructor)SystemCore_dealloc,
    .tp_members = SystemCore_members,
};

/* ---- CellCore ----------------------------------------------------------------------------- */

static int
CellCore_traverse(CellCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->system);
    Py_VISIT(self->queue);
    Py_VISIT(self->receive);
    Py_VISIT(self->meta);
    Py_VISIT(self->sysq);
    Py_VISIT(self->turn_message);
    Py_VISIT(self->gate);
    Py_VISIT(self->turn_done);
    Py_VISIT(self->scheduled);
    return 0;
}

static int
CellCore_clear(CellCore *self)
{
    Py_CLEAR(self->system);
    Py_CLEAR(self->queue);
    Py_CLEAR(self->receive);
    Py_CLEAR(self->meta);
    Py_CLEAR(self->sysq);
    Py_CLEAR(self->turn_message);
    Py_CLEAR(self->gate);
    Py_CLEAR(self->turn_done);
    Py_CLEAR(self->scheduled);
    return 0;
}

static void
CellCore_dealloc(CellCore *self)
{
    PyObject_GC_UnTrack(self);
    Py_TRASHCAN_BEGIN(self, CellCore_dealloc)
    CellCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
    Py_TRASHCAN_END
}

/* One turn's messages, up to ``limit``: the loop of _PyCellCore.turn (see there). */
static PyObject *
CellCore_turn(CellCore *self, PyObject *arg)
{
    Py_ssize_t limit = PyLong_AsSsize_t(arg);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (self->queue == NULL || self->receive == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a cell's turn before its queue and receive are set");
        return NULL;
    }
    PyObject *q = Py_NewRef(self->queue);
    PyObject *recv = Py_NewRef(self->receive);
    PyObject *func = PyMethod_Check(recv) ? PyMethod_GET_FUNCTION(recv) : NULL;
    PyObject *actor = PyMethod_Check(recv) ? PyMethod_GET_SELF(recv) : NULL; /* recv holds both */
    PyObject *message = NULL;
    Py_ssize_t done = 0;
    for (Py_ssize_t i = 1; i <= limit; i++) {
        done = i;
        PyObject *item = pop(q);
        if (item == NULL) {
            goto fail;
        }
        if (!PyTuple_CheckExact(item)) { /* what tell makes is a tuple; anything else unpacks */
            PyObject *pair = PySequence_Tuple(item);
            Py_SETREF(item, pair);
            if (item == NULL) {
                goto fail;
            }
        }
        if (PyTuple_GET_SIZE(item) != 2) { /* Python's words for the same unpacking */
            if (PyTuple_GET_SIZE(item) > 2) {
                PyErr_SetString(PyExc_ValueError, "too many values to unpack (expected 2)");
            }
            else {
                PyErr_Format(PyExc_ValueError, "not enough values to unpack (expected 2, got %zd)",
                             PyTuple_GET_SIZE(item));
            }
            Py_DECREF(item);
            goto fail;
        }
        Py_XSETREF(message, Py_NewRef(PyTuple_GET_ITEM(item, 0)));
        Py_XSETREF(self->meta, Py_NewRef(PyTuple_GET_ITEM(item, 1)));
        Py_DECREF(item);
        PyObject *r;
        if (func != NULL) { /* a bound method: call its function with its self, no rebinding */
            PyObject *call[2] = {actor, message};
            r = PyObject_Vectorcall(func, call, 2, NULL);
        }
        else {
            r = PyObject_Vectorcall(recv, &message, 1, NULL);
        }
        if (r == NULL) {
            goto fail;
        }
        if (r != Py_None) {
            PyObject *t = PyObject_CallMethodObjArgs(
                (PyObject *)self, str_start_handler_task, r, message, NULL);
            Py_DECREF(r);
            if (t == NULL) {
                goto fail;
            }
            Py_DECREF(t);
            break;
        }
        Py_DECREF(r);
        PyObject *sysq = self->sysq;
        if (sysq != NULL && sysq != Py_None) { /* control work ends the turn early */
            int pending;
            if (Py_IS_TYPE(sysq, deque_type)) {
                pending = Py_SIZE(sysq) > 0;
            }
            else {
                Py_INCREF(sysq);
                pending = PyObject_IsTrue(sysq);
                Py_DECREF(sysq);
            }
            if (pending < 0) {
                goto fail;
            }
            if (pending) {
                break;
            }
        }
    }
    Py_XDECREF(message);
    Py_DECREF(q);
    Py_DECREF(recv);
    return PyLong_FromSsize_t(done);
fail:
    if (PyErr_ExceptionMatches(PyExc_Exception)) { /* as in Python: only for an Exception */
        /* set aside while the record is written: what it replaces may run Python code */
        PyObject *exc_type, *exc, *tb;
        PyErr_Fetch(&exc_type, &exc, &tb);
        PyObject *n = PyLong_FromSsize_t(done);
        if (n != NULL) {
            Py_XSETREF(self->turn_done, n);
            Py_XSETREF(self->turn_message, message != NULL ? message : Py_NewRef(Py_None));
            message = NULL; /* the reference moved */
        }
        PyErr_Restore(exc_type, exc, tb); /* the handler's error, not a failure to record it */
    }
    Py_XDECREF(message);
    Py_DECREF(q);
    Py_DECREF(recv);
    return NULL;
}

static PyMethodDef CellCore_methods[] = {
    {"turn", (PyCFunction)CellCore_turn, METH_O,
     "Handle up to limit messages; the number taken. On an error, turn_done and turn_message "
     "say how far it got."},
    {NULL},
};

static PyMemberDef CellCore_members[] = {
    {"system", T_OBJECT_EX, offsetof(CellCore, system), 0, NULL},
    {"queue", T_OBJECT_EX, offsetof(CellCore, queue), 0, NULL},
    {"receive", T_OBJECT_EX, offsetof(CellCore, receive), 0, NULL},
    {"meta", T_OBJECT_EX, offsetof(CellCore, meta), 0, NULL},
    {"sysq", T_OBJECT_EX, offsetof(CellCore, sysq), 0, NULL},
    {"turn_message", T_OBJECT_EX, offsetof(CellCore, turn_message), 0, NULL},
    {"gate", T_OBJECT_EX, offsetof(CellCore, gate), 0, NULL},
    {"turn_done", T_OBJECT_EX, offsetof(CellCore, turn_done), 0, NULL},
    {"scheduled", T_OBJECT_EX, offsetof(CellCore, scheduled), 0, NULL},
    {NULL},
};

static PyTypeObject CellCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mailslot.runtime._speedups.CellCore",
    .tp_basicsize = sizeof(CellCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "An actor's mailbox and what its turn touches.",
    .tp_new = PyType_GenericNew,
    .tp_traverse = (traverseproc)CellCore_traverse,
    .tp_clear = (inquiry)CellCore_clear,
    .tp_dealloc = (destructor)CellCore_dealloc,
    .tp_methods = CellCore_methods,
    .tp_members = CellCore_members,
};

/* ---- RefCore ------------------------------------------------------------------------------ */

static int
RefCore_traverse(RefCore *self, visitproc visit, void *arg)
{
    Py_VISIT(self->cell);
    return 0;
}

static int
RefCore_clear(RefCore *self)
{
    Py_CLEAR(self->cell);
    return 0;
}

static void
RefCore_dealloc(RefCore *self)
{
    PyObject_GC_UnTrack(self);
    Py_TRASHCAN_BEGIN(self, RefCore_dealloc)
    RefCore_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
    Py_TRASHCAN_END
}

/* Parse tell(message, sender=None) from a vectorcall; 0, or -1 with TypeError. */
static int
tell_arguments(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **message,
               PyObject **sender)
{
    *message = nargs >= 1 ? args[0] : NULL;
    *sender = nargs >= 2 ? args[1] : NULL;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs > 2) {
        goto bad;
    }
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        PyObject **slot = NULL;
        if (PyUnicode_Compare(name, str_message) == 0) {
            slot = message;
        }
        else if (PyUnicode_Compare(name, str_sender) == 0) {
            slot = sender;
        }
        if (slot == NULL || *slot != NULL) { /* unknown, or given twice */
            goto bad;
        }
        *slot = args[nargs + k];
    }
    if (*message == NULL) {
        goto bad;
    }
    if (*sender == NULL) {
        *sender = Py_None;
    }
    return 0;
bad:
    if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_TypeError, "tell(message, sender=None)");
    }
    return -1;
}

/* LocalActorRef.tell: the twin of the pure-Python LocalActorRef.tell in core.py.
 *
 * It holds its own references to the cell, its system and its mailbox throughout: what it calls
 * (a mailbox's append, a decref) may run Python code that rebinds them. */
static PyObject *
RefCore_tell(RefCore *self, PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    PyObject *message, *sender;
    if (tell_arguments(args, PyVectorcall_NARGS(nargsf), kwnames, &message, &sender) < 0) {
        return NULL;
    }
    PyObject *cell = self->cell;
    if (cell == NULL || !PyObject_TypeCheck(cell, &CellCoreType)) {
        PyErr_SetString(PyExc_TypeError, "tell on a ref whose _cell is not a _Cell");
        return NULL;
    }
    CellCore *c = (CellCore *)cell;
    if (c->system == NULL || !PyObject_TypeCheck(c->system, &SystemCoreType) || c->queue == NULL ||
        c->gate == NULL) {
        PyErr_SetString(PyExc_TypeError, "tell to a cell without its system, queue or gate");
        return NULL;
    }
    Py_INCREF(cell);
    PyObject *q = Py_NewRef(c->queue);
    SystemCore *s = (SystemCore *)Py_NewRef(c->system);
    PyObject *result = NULL;
    Py_ssize_t n = length(q);
    if (n < 0) {
        goto done;
    }
    Py_ssize_t gate = PyLong_AsSsize_t(c->gate);
    if (gate == -1 && PyErr_Occurred()) {
        goto done;
    }
    if (n >= gate) {
        result =
            PyObject_CallMethodObjArgs(cell, str_tell_careful, message, sender, Py_False, NULL);
        goto done;
    }
    if (sender == Py_None) {
        if (s->current == NULL) {
            PyErr_SetString(PyExc_AttributeError, "_current");
            goto done;
        }
        sender = s->current;
    }
    PyObject *item = PyTuple_Pack(2, message, sender); /* sender is not used after this */
    if (item == NULL) {
        goto done;
    }
    int failed = push(q, item);
    Py_DECREF(item);
    if (failed) {
        goto done;
    }
    int scheduled = truth(c->scheduled, "scheduled");
    if (scheduled < 0) {
        goto done;
    }
    if (!scheduled) { /* becomes ready: the twin of ActorSystem._make_ready */
        Py_XSETREF(c->scheduled, Py_NewRef(Py_True));
        PyObject *ready = s->ready;
        if (ready == NULL) {
            PyErr_SetString(PyExc_AttributeError, "_ready");
            goto done;
        }
        Py_INCREF(ready);
        failed = push(ready, cell);
        Py_DECREF(ready);
        if (failed) {
            goto done;
        }
        int pending = truth(s->drain_pending, "_drain_pending");
        if (pending < 0) {
            goto done;
        }
        if (!pending) {
            PyObject *r = PyObject_CallMethodNoArgs((PyObject *)s, str_schedule_drain);
            if (r == NULL) {
                goto done;
            }
            Py_DECREF(r);
        }
    }
    result = Py_NewRef(Py_None);
done:
    if (result != NULL && result != Py_None) { /* tell_careful's: tell returns None */
        Py_SETREF(result, Py_NewRef(Py_None));
    }
    Py_DECREF(s);
    Py_DECREF(q);
    Py_DECREF(cell);
    return result;
}

static PyMemberDef RefCore_members[] = {
    {"_cell", T_OBJECT_EX, offsetof(RefCore, cell), 0, NULL},
    {NULL},
};

static PyMethodDef RefCore_methods[] = {
    {"_tell_local", (PyCFunction)(void (*)(void))RefCore_tell, METH_FASTCALL | METH_KEYWORDS,
     "LocalActorRef.tell in C."},
    {NULL},
};

static PyTypeObject RefCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mailslot.runtime._speedups.RefCore",
    .tp_basicsize = sizeof(RefCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The base of every ActorRef: a local ref's cell.",
    .tp_new = PyType_GenericNew,
    .tp_traverse = (traverseproc)RefCore_traverse,
    .tp_clear = (inquiry)RefCore_clear,
    .tp_dealloc = (destructor)RefCore_dealloc,
    .tp_methods = RefCore_methods,
    .tp_members = RefCore_members,
};

/* ---- module ------------------------------------------------------------------------------- */

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mailslot.runtime._speedups",
    .m_doc = "The hot path of mailslot.runtime (optional; see core.py).",
    .m_size = -1,
};

/* Check at import what the fast paths assume of collections.deque: that its C methods are what
 * deque_method found and that Py_SIZE is its length. */
static int
check_deque(void)
{
    PyObject *d = PyObject_CallNoArgs((PyObject *)deque_type);
    if (d == NULL) {
        return -1;
    }
    int ok = 1;
    for (long i = 0; i < 3 && ok; i++) {
        PyObject *n = PyLong_FromLong(i);
        PyObject *r = n == NULL ? NULL : deque_append(d, n);
        Py_XDECREF(n);
        ok = r != NULL;
        Py_XDECREF(r);
    }
    if (ok && Py_SIZE(d) == 3 && PyObject_Length(d) == 3) {
        PyObject *first = deque_popleft(d, NULL);
        ok = first != NULL && PyLong_CheckExact(first) && PyLong_AsLong(first) == 0 &&
             Py_SIZE(d) == 2;
        Py_XDECREF(first);
    }
    else {
        ok = 0;
    }
    Py_DECREF(d);
    if (!ok) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ImportError, "collections.deque is not laid out as expected");
        return -1;
    }
    return 0;
}

static PyObject *
init(void)
{
    if (PyType_Ready(&SystemCoreType) < 0 || PyType_Ready(&CellCoreType) < 0 ||
        PyType_Ready(&RefCoreType) < 0) {
        return NULL;
    }
    PyObject *collections = PyImport_ImportModule("_collections");
    if (collections == NULL) {
        return NULL;
    }
    PyObject *deque = PyObject_GetAttrString(collections, "deque");
    Py_DECREF(collections);
    if (deque == NULL) {
        return NULL;
    }
    if (!PyType_Check(deque)) {
        Py_DECREF(deque);
        PyErr_SetString(PyExc_ImportError, "_collections.deque is not a type");
        return NULL;
    }
    deque_type = (PyTypeObject *)deque;
    deque_append = deque_method("append", METH_O);
    deque_popleft = deque_method("popleft", METH_NOARGS);
    if (deque_append == NULL || deque_popleft == NULL || check_deque() < 0) {
        return NULL;
    }
    str_append = PyUnicode_InternFromString("append");
    str_popleft = PyUnicode_InternFromString("popleft");
    str_tell_careful = PyUnicode_InternFromString("tell_careful");
    str_schedule_drain = PyUnicode_InternFromString("_schedule_drain");
    str_start_handler_task = PyUnicode_InternFromString("start_handler_task");
    str_sender = PyUnicode_InternFromString("sender");
    str_message = PyUnicode_InternFromString("message");
    if (!str_append || !str_popleft || !str_tell_careful || !str_schedule_drain ||
        !str_start_handler_task || !str_sender || !str_message) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&speedups_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "SystemCore", (PyObject *)&SystemCoreType) < 0 ||
        PyModule_AddObjectRef(m, "CellCore", (PyObject *)&CellCoreType) < 0 ||
        PyModule_AddObjectRef(m, "RefCore", (PyObject *)&RefCoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

/* Any failure to initialise is an ImportError, so that core.py falls back to pure Python. */
PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *m = init();
    if (m == NULL && !PyErr_ExceptionMatches(PyExc_ImportError)) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        PyErr_Format(PyExc_ImportError, "mailslot.runtime._speedups cannot start: %R", value);
        PyObject *t2, *v2, *tb2;
        PyErr_Fetch(&t2, &v2, &tb2);
        PyErr_NormalizeException(&t2, &v2, &tb2);
        if (value != NULL) {
            PyException_SetCause(v2, value); /* steals value */
        }
        Py_XDECREF(type);
        Py_XDECREF(tb);
        PyErr_Restore(t2, v2, tb2);
    }
    return m;
}
