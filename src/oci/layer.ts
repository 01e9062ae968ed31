// Shared by the layer writer (snapshotter) and the compressor (exporter), neither of which may
// know the other: the block size is part of the layer format, since gzip members are cut at it.

/** Bytes per block a layer tar is written in, and input bytes per gzip member (blocks map 1:1). */
export const TAR_BLOCK_SIZE = 1024 * 1024;
