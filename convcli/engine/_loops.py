"""The compiled loops of the direct and separable paths, in one file on purpose.

Numba's on-disk cache checks only the source file of the function it compiled, not the
files of the helpers inlined into it: with the helpers in another module, editing them
left stale machine code in the cache. Keeping every loop here means any edit recompiles
all of them.

Each entry point is serial and GIL-free over a range of tasks (output rows), so that
``_runtime.run_tasks`` can share the rows among threads. The input rows are read where they
are; the padded image is never built. ``row_map``/``col_map`` give, for each padded
row/column, the input index it reads (-1: a zero); columns are looked up only at the
borders. Dilation is index arithmetic.

Direct (``direct_conv``, stride and dilation 1 across): every output pixel is a sum over
C_in/groups x kH x kW taps. The kernel is cut into blocks of 3 x 3, 5 x 5, 4 x 7 or 3 x 7
taps (and 5 x 1 for a last odd column; ``add_block``). Each block is one pass over the
output row that sums its taps in registers, a row's taps left to right, then the rows, and
loads and stores each output once: a 3x3 or 5x5 kernel is one pass, a 7x7 two. The block
sizes are constants, so LLVM unrolls them and vectorises across the row; it cannot keep a
sum in registers over a loop of runtime length. Kernel rows in the zero padding or past the
kernel's last row read a row of zeros with weight 0 (0 * 0, never 0 * inf). Each output's
sum runs in the same order wherever its task range starts, so threads and strips give the
same bits. Against the four-taps-a-pass loop below, one thread on 2048^2: 3x3 2.4-2.6
against 5.2 ms, 5x5 4.1-4.6 against 9.0, 7x7 8.2-8.5 against 13.9 (cv2.filter2D 2.7, 4.7,
8.2). Two output rows a pass (each input load shared) ran 2.7x slower at 7x7: 56 weights
and two sums do not fit the registers.

Strided (``strided_conv``, any other stride or dilation across): the taps that fall on
image rows are listed once and added four per pass (``add_four_taps``: a row, where it
starts, a weight), so each load and store of the output carries four multiply-adds. A
strided slice with a runtime stride is not contiguous and runs as scalar code; unused
slots of a pass read a row of zeros with weight 0.

Separable (rank-1 depthwise kernels): a kH x kW kernel that is ``outer(column, row)``
costs kH + kW multiply-adds per pixel instead of kH * kW. Each output row is a column
pass summing kH input rows into the middle of a padded row buffer, ``fill_borders``
through ``col_map``, then the row pass over the buffer (``accumulate_row``).
"""

from __future__ import annotations

import numpy as np

from ._numba_config import jit, jit_inline

TAPS_PER_PASS = 4  # the taps ``add_four_taps`` adds per pass over an output row
# The largest block of kernel rows x columns ``direct_conv`` sums per pass over an output row.
MOST_PASS_ROWS, MOST_PASS_COLUMNS = 5, 7


@jit
def direct_conv(first_task, last_task, x, weight, bias, row_map, col_map, pad_left, stride_h,
                stride_w, dilation_h, dilation_w, groups, out):
    """Cross-correlate ``x`` (N, C_in, H, W) with ``weight`` into the output rows
    [first_task, last_task) of ``out`` (N, C_out, Ho, Wo), counted over (n, c_out, row), at
    stride and dilation 1 across (``stride_w`` and ``dilation_w`` are unused; ``strided_conv``
    takes the other kernels)."""
    batch, out_channels, out_h, out_w = out.shape
    group_in, kernel_h, kernel_w = weight.shape[1], weight.shape[2], weight.shape[3]
    group_out = out_channels // groups
    width = x.shape[3]
    zero_row = np.zeros(width, np.float32)    # a kernel row in the zero padding, or past kH
    # The outputs whose taps all read columns inside the image; the rest are border outputs.
    first, last = inside_outputs(-pad_left, 1, width, out_w)
    last = min(last, inside_outputs(kernel_w - 1 - pad_left, 1, width, out_w)[1])
    last = max(last, first)
    sources = np.empty(kernel_h, np.int64)    # the image row under each kernel row (-1: zeros)
    taps = np.zeros((MOST_PASS_ROWS, MOST_PASS_COLUMNS), np.float32)
    blocks = kernel_blocks(kernel_h, kernel_w)
    used = np.empty(blocks.shape[0], np.bool_)  # blocks with a kernel row on the image
    for task in range(first_task, last_task):
        n, co, oy = output_row(task, out_channels, out_h)
        first_in = (co // group_out) * group_in
        destination = out[n, co, oy]
        for ky in range(kernel_h):
            sources[ky] = row_map[oy * stride_h + ky * dilation_h]
        for b in range(blocks.shape[0]):
            used[b] = False
            for j in range(blocks[b, 3]):
                used[b] = used[b] or row_on_image(sources, blocks[b, 2], blocks[b, 3], j)
        # The bias is added last, to the whole sum, as adding it afterwards would.
        passes = group_in * used.sum()
        done = 0
        for ci in range(group_in):
            image = x[n, first_in + ci]
            for b in range(blocks.shape[0]):
                if not used[b]:
                    continue
                kx0, columns, ky0, rows = blocks[b, 0], blocks[b, 1], blocks[b, 2], blocks[b, 3]
                # Kernel rows in the zero padding or past the kernel read a row of zeros
                # with weights 0 (0 * 0: never 0 * inf).
                for j in range(MOST_PASS_ROWS):
                    on_image = row_on_image(sources, ky0, rows, j)
                    for kx in range(columns):
                        taps[j, kx] = (weight[co, ci, ky0 + j, kx0 + kx] if on_image
                                       else np.float32(0.0))
                done += 1
                add_block(destination, first, last - first,
                          block_row(image, sources, ky0, rows, 0, zero_row),
                          block_row(image, sources, ky0, rows, 1, zero_row),
                          block_row(image, sources, ky0, rows, 2, zero_row),
                          block_row(image, sources, ky0, rows, 3, zero_row),
                          block_row(image, sources, ky0, rows, 4, zero_row),
                          taps, rows, columns, first - pad_left + kx0,
                          bias[co] if done == passes else np.float32(0.0), done > 1)
        if passes == 0:                      # every kernel row in the zero padding
            destination[first:last] = bias[co]
        for k in range(out_w - (last - first)):     # the border outputs, tap by tap
            o = k if k < first else k + last - first
            total = np.float32(0.0)
            for ci in range(group_in):
                for ky in range(kernel_h):
                    if sources[ky] >= 0:
                        row = x[n, first_in + ci, sources[ky]]
                        for kx in range(kernel_w):
                            total += mapped_term(weight[co, ci, ky, kx], row,
                                                 col_map[o + kx])
            destination[o] = total + bias[co]


@jit
def strided_conv(first_task, last_task, x, weight, bias, row_map, col_map, pad_left, stride_h,
                 stride_w, dilation_h, dilation_w, groups, out):
    """``direct_conv`` at any stride and dilation across, four taps a pass."""
    batch, out_channels, out_h, out_w = out.shape
    group_in, kernel_h, kernel_w = weight.shape[1], weight.shape[2], weight.shape[3]
    group_out = out_channels // groups
    most = group_in * kernel_h * kernel_w
    # The taps on image rows: input channel, image row, column offset, weight.
    channels, rows = np.empty(most, np.int64), np.empty(most, np.int64)
    offsets, values = np.empty(most, np.int64), np.empty(most, np.float32)
    zero_row = np.zeros(x.shape[3], np.float32)  # the unused slots of the last pass
    for task in range(first_task, last_task):
        n, co, oy = output_row(task, out_channels, out_h)
        first_in = (co // group_out) * group_in
        destination = out[n, co, oy]
        destination[:] = bias[co]
        count = 0
        for ci in range(group_in):
            for ky in range(kernel_h):
                source_row = row_map[oy * stride_h + ky * dilation_h]
                if source_row >= 0:
                    for kx in range(kernel_w):
                        channels[count], rows[count] = first_in + ci, source_row
                        offsets[count], values[count] = kx * dilation_w, weight[co, ci, ky, kx]
                        count += 1
        image = x[n]
        for g in range(0, count, TAPS_PER_PASS):
            add_taps_with_borders(
                destination,
                image[channels[g], rows[g]],
                image[channels[g + 1], rows[g + 1]] if g + 1 < count else zero_row,
                image[channels[g + 2], rows[g + 2]] if g + 2 < count else zero_row,
                image[channels[g + 3], rows[g + 3]] if g + 3 < count else zero_row,
                values[g],
                values[g + 1] if g + 1 < count else np.float32(0.0),
                values[g + 2] if g + 2 < count else np.float32(0.0),
                values[g + 3] if g + 3 < count else np.float32(0.0),
                offsets[g], offsets[min(g + 1, count - 1)], offsets[min(g + 2, count - 1)],
                offsets[min(g + 3, count - 1)], pad_left, stride_w, col_map)


@jit_inline
def add_taps_with_borders(destination, row0, row1, row2, row3, t0, t1, t2, t3, c0, c1, c2, c3,
                          pad_left, stride, col_map):
    """``destination[o] += sum_i t_i * row_i[column]`` for the four taps, where ``column`` is
    the input column under output o for a kernel column offset ``c_i`` (``o*stride + c_i -
    pad_left`` inside the image; ``col_map[o*stride + c_i]`` at the borders, -1 adds nothing).
    """
    out_w, width = destination.shape[0], row0.shape[0]
    first0, last0 = inside_outputs(c0 - pad_left, stride, width, out_w)
    first1, last1 = inside_outputs(c1 - pad_left, stride, width, out_w)
    first2, last2 = inside_outputs(c2 - pad_left, stride, width, out_w)
    first3, last3 = inside_outputs(c3 - pad_left, stride, width, out_w)
    first = max(max(first0, first1), max(first2, first3))
    last = max(min(min(last0, last1), min(last2, last3)), first)
    for k in range(out_w - (last - first)):                 # the border outputs, one by one
        o = k if k < first else k + last - first
        destination[o] += (mapped_term(t0, row0, col_map[o * stride + c0])
                           + mapped_term(t1, row1, col_map[o * stride + c1])
                           + mapped_term(t2, row2, col_map[o * stride + c2])
                           + mapped_term(t3, row3, col_map[o * stride + c3]))
    if last > first:
        start = first * stride - pad_left
        add_four_taps(destination[first:last], row0, row1, row2, row3, t0, t1, t2, t3,
                      start + c0, start + c1, start + c2, start + c3, stride)


@jit_inline
def output_row(task, out_channels, out_h):
    """The (image, output channel, row) of a task: tasks count rows over (n, c_out, row)."""
    return task // (out_channels * out_h), (task // out_h) % out_channels, task % out_h


@jit_inline
def kernel_blocks(kernel_h, kernel_w):
    """The blocks ``add_block`` sums a kH x kW kernel in, one row each: first column, columns
    (7 while 7 are left, 5 if exactly 5 are, else 3 while 3 are, then 1), first row, rows (4
    or, for the last three, 3 for 7 columns; 3 for 3; 5 for 5 and 1: a block may reach past
    the kernel's last row). Six columns as 3 + 3 took 7.5-7.8 ms against 10.2 as 5 + 1 (6x6
    on 2048^2, one thread); 8 to 11 as 7 + ... ran 3-15% faster than as 5 + 3 + ...."""
    blocks = np.empty((kernel_h * kernel_w, 4), np.int64)        # more than enough
    count = 0
    kx0 = 0
    while kx0 < kernel_w:
        left = kernel_w - kx0
        columns = 7 if left >= 7 else (5 if left == 5 else (3 if left >= 3 else 1))
        ky0 = 0
        while ky0 < kernel_h:
            if columns == 7:
                rows = 4 if kernel_h - ky0 >= 4 else 3
            else:
                rows = 3 if columns == 3 else 5
            blocks[count, 0], blocks[count, 1] = kx0, columns
            blocks[count, 2], blocks[count, 3] = ky0, rows
            count += 1
            ky0 += rows
        kx0 += columns
    return blocks[:count]


@jit_inline
def row_on_image(sources, ky0, rows, j):
    """Whether row ``j`` of a block of ``rows`` from kernel row ``ky0`` is a kernel row on
    the image (``sources`` >= 0), not one in the zero padding or past the kernel."""
    ky = ky0 + j
    return j < rows and ky < sources.shape[0] and sources[ky] >= 0


@jit_inline
def block_row(image, sources, ky0, rows, j, zero_row):
    """The image row under row ``j`` of a block (``zero_row`` where it is off the image)."""
    return image[sources[ky0 + j]] if row_on_image(sources, ky0, rows, j) else zero_row


@jit_inline
def add_block(destination, first, count, r0, r1, r2, r3, r4, taps, rows, columns, start, bias,
              accumulate):
    """``destination[first + o] = (destination[first + o] if accumulate else 0) + sum_{j, k}
    taps[j, k] * r_j[start + o + k] + bias`` for o < ``count``, over a block of 3 x 3, 5 x 5,
    4 x 7, 3 x 7 or 5 x 1 taps (``rows`` x ``columns``): each row's taps summed, then the
    rows', in registers; the destination is loaded and stored once. (Whole rows indexed from offsets LLVM can tell are >= 0 let it
    vectorise; slices of them ran 1.5x slower.)"""
    first, start = max(first, 0), max(start, 0)
    if columns == 7:
        a0, a1, a2, a3, a4, a5, a6 = (taps[0, 0], taps[0, 1], taps[0, 2], taps[0, 3], taps[0, 4],
                                      taps[0, 5], taps[0, 6])
        b0, b1, b2, b3, b4, b5, b6 = (taps[1, 0], taps[1, 1], taps[1, 2], taps[1, 3], taps[1, 4],
                                      taps[1, 5], taps[1, 6])
        c0, c1, c2, c3, c4, c5, c6 = (taps[2, 0], taps[2, 1], taps[2, 2], taps[2, 3], taps[2, 4],
                                      taps[2, 5], taps[2, 6])
        d0, d1, d2, d3, d4, d5, d6 = (taps[3, 0], taps[3, 1], taps[3, 2], taps[3, 3], taps[3, 4],
                                      taps[3, 5], taps[3, 6])
        if rows == 4:
            for o in range(count):
                i = start + o
                s = ((seven(r0, i, a0, a1, a2, a3, a4, a5, a6)
                      + seven(r1, i, b0, b1, b2, b3, b4, b5, b6))
                     + (seven(r2, i, c0, c1, c2, c3, c4, c5, c6)
                        + seven(r3, i, d0, d1, d2, d3, d4, d5, d6)))
                destination[first + o] = (destination[first + o] + s if accumulate else s) + bias
        else:
            for o in range(count):
                i = start + o
                s = ((seven(r0, i, a0, a1, a2, a3, a4, a5, a6)
                      + seven(r1, i, b0, b1, b2, b3, b4, b5, b6))
                     + seven(r2, i, c0, c1, c2, c3, c4, c5, c6))
                destination[first + o] = (destination[first + o] + s if accumulate else s) + bias
    elif columns == 5:
        a0, a1, a2, a3, a4 = taps[0, 0], taps[0, 1], taps[0, 2], taps[0, 3], taps[0, 4]
        b0, b1, b2, b3, b4 = taps[1, 0], taps[1, 1], taps[1, 2], taps[1, 3], taps[1, 4]
        c0, c1, c2, c3, c4 = taps[2, 0], taps[2, 1], taps[2, 2], taps[2, 3], taps[2, 4]
        d0, d1, d2, d3, d4 = taps[3, 0], taps[3, 1], taps[3, 2], taps[3, 3], taps[3, 4]
        e0, e1, e2, e3, e4 = taps[4, 0], taps[4, 1], taps[4, 2], taps[4, 3], taps[4, 4]
        for o in range(count):
            i = start + o
            s = (((five(r0, i, a0, a1, a2, a3, a4) + five(r1, i, b0, b1, b2, b3, b4))
                  + (five(r2, i, c0, c1, c2, c3, c4) + five(r3, i, d0, d1, d2, d3, d4)))
                 + five(r4, i, e0, e1, e2, e3, e4))
            destination[first + o] = (destination[first + o] + s if accumulate else s) + bias
    elif columns == 3:
        a0, a1, a2 = taps[0, 0], taps[0, 1], taps[0, 2]
        b0, b1, b2 = taps[1, 0], taps[1, 1], taps[1, 2]
        c0, c1, c2 = taps[2, 0], taps[2, 1], taps[2, 2]
        for o in range(count):
            i = start + o
            s = (three(r0, i, a0, a1, a2) + three(r1, i, b0, b1, b2)) + three(r2, i, c0, c1, c2)
            destination[first + o] = (destination[first + o] + s if accumulate else s) + bias
    else:
        a0, b0, c0, d0, e0 = taps[0, 0], taps[1, 0], taps[2, 0], taps[3, 0], taps[4, 0]
        for o in range(count):
            i = start + o
            s = ((a0 * r0[i] + b0 * r1[i]) + (c0 * r2[i] + d0 * r3[i])) + e0 * r4[i]
            destination[first + o] = (destination[first + o] + s if accumulate else s) + bias


@jit_inline
def three(row, i, t0, t1, t2):
    """``t0*row[i] + t1*row[i + 1] + t2*row[i + 2]``, summed left to right."""
    return t0 * row[i] + t1 * row[i + 1] + t2 * row[i + 2]


@jit_inline
def five(row, i, t0, t1, t2, t3, t4):
    """Five taps of a row from ``row[i]``, summed left to right."""
    return three(row, i, t0, t1, t2) + t3 * row[i + 3] + t4 * row[i + 4]


@jit_inline
def seven(row, i, t0, t1, t2, t3, t4, t5, t6):
    """Seven taps of a row from ``row[i]``, summed left to right."""
    return five(row, i, t0, t1, t2, t3, t4) + t5 * row[i + 5] + t6 * row[i + 6]


@jit_inline
def mapped_term(tap, row, column):
    """``tap * row[column]``, or 0 where the column lies in the zero padding (-1)."""
    return tap * row[column] if column >= 0 else np.float32(0.0)


@jit_inline
def inside_outputs(shift, stride, width, out_w):
    """The outputs [first, last) whose column ``o*stride + shift`` lies inside the image."""
    first = min(max(-(shift // stride), 0), out_w)          # ceil(-shift / stride), clipped
    last = min(max((width - 1 - shift) // stride + 1, first), out_w)
    return first, last


@jit
def separable_conv(first_task, last_task, x, column, row, bias, row_map, col_map, pad_left,
                   stride_h, stride_w, dilation_h, dilation_w, out):
    """``out[n, c] = bias[c] + (column[c] x row[c]) * x[n, c // (C_out / C_in)]``, for the
    output rows [first_task, last_task) counted over (n, c, row).

    ``x`` is (N, C_in, H, W); ``column`` (C_out, kH), ``row`` (C_out, kW): one input
    channel per group, as in a depthwise convolution.
    """
    batch, out_channels, out_h, out_w = out.shape
    in_channels, width = x.shape[1], x.shape[3]
    kernel_h = column.shape[1]
    per_input = out_channels // in_channels
    rows, values = np.empty(kernel_h, np.int64), np.empty(kernel_h, np.float32)
    padded = np.zeros(col_map.shape[0], dtype=np.float32)
    summed = padded[pad_left:pad_left + width]
    # The unused slots of a pass read zeros with weight 0 (0 * 0, never 0 * NaN).
    zeros = np.zeros(max(width, col_map.shape[0]), np.float32)
    for task in range(first_task, last_task):
        n, co, oy = output_row(task, out_channels, out_h)
        ci = co // per_input
        image = x[n, ci]
        count = 0
        for ky in range(kernel_h):                   # the kernel rows that fall on the image
            source_row = row_map[oy * stride_h + ky * dilation_h]
            if source_row >= 0:
                rows[count], values[count] = source_row, column[co, ky]
                count += 1
        summed[:] = 0.0
        for g in range(0, count, TAPS_PER_PASS):     # the column pass, four rows at a time
            add_four_taps(summed, image[rows[g]],
                          image[rows[g + 1]] if g + 1 < count else zeros,
                          image[rows[g + 2]] if g + 2 < count else zeros,
                          image[rows[g + 3]] if g + 3 < count else zeros,
                          values[g],
                          values[g + 1] if g + 1 < count else np.float32(0.0),
                          values[g + 2] if g + 2 < count else np.float32(0.0),
                          values[g + 3] if g + 3 < count else np.float32(0.0),
                          0, 0, 0, 0, 1)
        fill_borders(padded, col_map, pad_left, width)
        destination = out[n, co, oy]
        destination[:] = bias[co]
        accumulate_row(destination, padded, row[co], stride_w, dilation_w, zeros)


@jit_inline
def add_four_taps(destination, row0, row1, row2, row3, t0, t1, t2, t3, s0, s1, s2, s3, stride):
    """``destination[o] += t0*row0[s0 + o*stride] + ... + t3*row3[s3 + o*stride]`` for every
    o; every index read must lie inside its row."""
    count = destination.shape[0]
    if stride == 1:
        a0, a1, a2, a3 = row0[s0:s0 + count], row1[s1:s1 + count], row2[s2:s2 + count], row3[s3:s3 + count]
        for o in range(count):
            destination[o] += t0 * a0[o] + t1 * a1[o] + t2 * a2[o] + t3 * a3[o]
    else:
        span = (count - 1) * stride + 1
        b0, b1 = row0[s0:s0 + span:stride], row1[s1:s1 + span:stride]
        b2, b3 = row2[s2:s2 + span:stride], row3[s3:s3 + span:stride]
        for o in range(count):
            destination[o] += t0 * b0[o] + t1 * b1[o] + t2 * b2[o] + t3 * b3[o]


@jit_inline
def fill_borders(buffer, col_map, pad_left, width):
    """Fill the padding of ``buffer`` (a padded row whose middle ``width`` pixels are set)
    through ``col_map``: each border position copies the pixel it maps to, or 0 for -1."""
    for j in range(pad_left):
        column = col_map[j]
        buffer[j] = buffer[pad_left + column] if column >= 0 else 0.0
    for j in range(pad_left + width, buffer.shape[0]):
        column = col_map[j]
        buffer[j] = buffer[pad_left + column] if column >= 0 else 0.0


@jit_inline
def accumulate_row(destination, padded, taps, stride, dilation, zeros):
    """``destination[o] += sum_k taps[k] * padded[o*stride + k*dilation]`` for every o; the
    unused slots of the last pass read ``zeros`` (at least as long as ``padded``)."""
    kernel = taps.shape[0]
    for k in range(0, kernel, TAPS_PER_PASS):
        add_four_taps(destination, padded,
                      padded if k + 1 < kernel else zeros,
                      padded if k + 2 < kernel else zeros,
                      padded if k + 3 < kernel else zeros,
                      taps[k],
                      taps[k + 1] if k + 1 < kernel else np.float32(0.0),
                      taps[k + 2] if k + 2 < kernel else np.float32(0.0),
                      taps[k + 3] if k + 3 < kernel else np.float32(0.0),
                      k * dilation, min(k + 1, kernel - 1) * dilation,
                      min(k + 2, kernel - 1) * dilation, min(k + 3, kernel - 1) * dilation,
                      stride)
