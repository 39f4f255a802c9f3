//! Watch hub (see the watch implementation).
