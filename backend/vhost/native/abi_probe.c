/*
 * Print the x86_64 layout of the libvhost-user structures that backend/vhost/abi.py
 * mirrors in ctypes, as JSON. build.sh writes it to build/native/abi.json; the binding
 * refuses to load when its ctypes layout disagrees, so an ABI drift fails loudly instead
 * of corrupting memory.
 */
#include <stdio.h>
#include <stddef.h>
#include "libvhost-user.h"

#define SZ(t) printf("%s\"%s\": {\"sizeof\": %zu", first_struct ? "" : ",\n ", #t, sizeof(t)); \
              first_struct = 0
#define OFF(t, f) printf(", \"%s\": %zu", #f, offsetof(t, f))
#define END() printf("}")

int main(void)
{
    int first_struct = 1;

    printf("{");
    SZ(VuDev);
    OFF(VuDev, sock); OFF(VuDev, nregions); OFF(VuDev, regions); OFF(VuDev, vq);
    OFF(VuDev, inflight_info); OFF(VuDev, log_call_fd); OFF(VuDev, slave_mutex);
    OFF(VuDev, slave_fd); OFF(VuDev, log_size); OFF(VuDev, log_table);
    OFF(VuDev, features); OFF(VuDev, protocol_features); OFF(VuDev, broken);
    OFF(VuDev, max_queues); OFF(VuDev, read_msg); OFF(VuDev, set_watch);
    OFF(VuDev, remove_watch); OFF(VuDev, panic); OFF(VuDev, iface);
    OFF(VuDev, postcopy_ufd); OFF(VuDev, postcopy_listening);
    END();
    SZ(VuDevRegion);
    OFF(VuDevRegion, gpa); OFF(VuDevRegion, size); OFF(VuDevRegion, qva);
    OFF(VuDevRegion, mmap_offset); OFF(VuDevRegion, mmap_addr);
    END();
    SZ(VuVirtq);
    OFF(VuVirtq, vring); OFF(VuVirtq, inflight); OFF(VuVirtq, resubmit_list);
    OFF(VuVirtq, resubmit_num); OFF(VuVirtq, counter); OFF(VuVirtq, last_avail_idx);
    OFF(VuVirtq, shadow_avail_idx); OFF(VuVirtq, used_idx); OFF(VuVirtq, signalled_used);
    OFF(VuVirtq, signalled_used_valid); OFF(VuVirtq, notification); OFF(VuVirtq, inuse);
    OFF(VuVirtq, handler); OFF(VuVirtq, call_fd); OFF(VuVirtq, kick_fd);
    OFF(VuVirtq, err_fd); OFF(VuVirtq, enable); OFF(VuVirtq, started); OFF(VuVirtq, vra);
    END();
    SZ(VuVirtqElement);
    OFF(VuVirtqElement, index); OFF(VuVirtqElement, out_num); OFF(VuVirtqElement, in_num);
    OFF(VuVirtqElement, in_sg); OFF(VuVirtqElement, out_sg);
    END();
    SZ(VuDevIface);
    OFF(VuDevIface, get_features); OFF(VuDevIface, set_features);
    OFF(VuDevIface, get_protocol_features); OFF(VuDevIface, set_protocol_features);
    OFF(VuDevIface, process_msg); OFF(VuDevIface, queue_set_started);
    OFF(VuDevIface, queue_is_processed_in_order); OFF(VuDevIface, get_config);
    OFF(VuDevIface, set_config);
    END();
    SZ(VhostUserMsg);
    OFF(VhostUserMsg, request); OFF(VhostUserMsg, flags); OFF(VhostUserMsg, size);
    OFF(VhostUserMsg, payload); OFF(VhostUserMsg, fds); OFF(VhostUserMsg, fd_num);
    OFF(VhostUserMsg, data);
    END();
    printf("}\n");
    return 0;
}
