/* The locked-counter floor of `mpshm bench`: a robust, process-shared pthread mutex in shared
 * memory, taken and released around `++` by two processes. Nothing but glibc: the least a
 * cross-process locked increment that survives a dead holder costs on this machine. */

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
