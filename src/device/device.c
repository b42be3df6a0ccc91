/* device.c: the backend-independent parts of the device interface. */
#include "device/device.h"

#include <stdlib.h>

uint64_t lyra_device_free_mem(const lyra_device *d) {
    return d && d->ops && d->ops->free_mem ? d->ops->free_mem(d) : 0;
}

void lyra_device_free(lyra_device *d) {
    if (!d) return;
    if (d->ops && d->ops->destroy) d->ops->destroy(d);
    else free(d);
}
