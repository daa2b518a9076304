/* The locked-counter floor of `mpshm bench`: a robust, process-shared pthread mutex in shared
 * memory, taken and released around `++` by two processes. Nothing but glibc: the least a
 * cross-process locked increment that survives a dead holder costs on this machine. The same
 * mutex is the owner-death floor: a holder is killed, and a waiter's lock returns EOWNERDEAD. */

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of the mutex, for placing the counter after it. */
size_t mpshm_floor_mutex_size(void) { return sizeof(pthread_mutex_t); }

/* Initialises `m` (robust, process-shared, default type); 0 or an errno value. */
int mpshm_floor_mutex_init(pthread_mutex_t *m) {
    pthread_mutexattr_t a;
    int r = pthread_mutexattr_init(&a);
    if (r != 0) {
        return r;
    }
    r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (r == 0) {
        r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    }
    if (r == 0) {
        r = pthread_mutex_init(m, &a);
    }
    pthread_mutexattr_destroy(&a);
    return r;
}

/* `n` rounds of lock, `++*counter`, unlock; 0, or the first error. A previous owner's death is
 * made good (the count it may have left half-made is a plain integer: nothing to repair). */
int mpshm_floor_count(pthread_mutex_t *m, volatile uint64_t *counter, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        int r = pthread_mutex_lock(m);
        if (r == EOWNERDEAD) {
            r = pthread_mutex_consistent(m);
        }
        if (r != 0) {
            return r;
        }
        *counter += 1;
        r = pthread_mutex_unlock(m);
        if (r != 0) {
            return r;
        }
    }
    return 0;
}

/* Takes `m` and keeps it: the holder that the owner-death floor kills. 0 or an errno value. */
int mpshm_floor_hold(pthread_mutex_t *m) {
    int r = pthread_mutex_lock(m);
    if (r == EOWNERDEAD) {
        r = pthread_mutex_consistent(m);
    }
    return r;
}

/* Takes `m`, whose holder was killed: what `pthread_mutex_lock` said. On EOWNERDEAD the mutex
 * is made consistent and released again, as mpshm's row marks its guard consistent and drops
 * it, before the time is taken; that value is returned unless one of those calls failed. */
int mpshm_floor_take_from_dead(pthread_mutex_t *m) {
    int r = pthread_mutex_lock(m);
    if (r == 0) {
        pthread_mutex_unlock(m);
        return 0;
    }
    if (r != EOWNERDEAD) {
        return r;
    }
    int c = pthread_mutex_consistent(m);
    if (c == 0) {
        c = pthread_mutex_unlock(m);
    }
    return c == 0 ? EOWNERDEAD : c;
}
