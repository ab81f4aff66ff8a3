"""A/B of the depthwise driver's indirection build: rows inside the input vertically from one
precomputed pattern (default) vs the nested loops for every row (TFQ8_DW_INDIRECTION=v1), on the
MobileNetV2 depthwise layers, interleaved repeat by repeat, 2 threads, Grappler off.

    python bench/dw_indirection_ab.py
"""
import os, sys, time, statistics, numpy as np, tensorflow as tf
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
tf.config.threading.set_intra_op_parallelism_threads(2); tf.config.threading.set_inter_op_parallelism_threads(1)
import tfq8
rng = np.random.default_rng(0)
L = [(112,112,32,1),(112,112,96,2),(56,56,144,1),(56,56,144,2),(28,28,192,1),(14,14,384,1),(14,14,576,1),(7,7,960,1)]
tot={"new":0,"v1":0}
for batch in (1,16):
  for h,w,c,s in L:
    x = tf.constant(rng.integers(0,256,(batch,h,w,c),dtype=np.uint8)); wt=tf.constant(rng.integers(-127,128,(3,3,c,1),dtype=np.int8))
    b=tf.constant(rng.uniform(-1,1,c).astype(np.float32)); fs=tf.constant(rng.uniform(.001,.01,c).astype(np.float32))
    pads=[1,1,1,1] if s==1 else [0,1,0,1]
    R=20
    def mk():
      @tf.function
      def run():
        y=x
        outs=[]
        for _ in range(R):
          outs.append(tfq8.ops.tfq8_depthwise_conv2d(x, wt, b, fs, [], input_scale=0.02, input_zero_point=0, strides=[s,s], explicit_paddings=pads, activation="RELU6", output_scale=6/255))
        return tf.add_n([tf.cast(o[0,0,0,0],tf.int32) for o in outs])
      return run
    fns={"new":mk(),"v1":mk()}
    for k,f in fns.items():
      if k=="v1": os.environ["TFQ8_DW_INDIRECTION"]="v1"
      else: os.environ.pop("TFQ8_DW_INDIRECTION",None)
      f()
    t={k:[] for k in fns}
    for _ in range(9):
      for k,f in fns.items():
        if k=="v1": os.environ["TFQ8_DW_INDIRECTION"]="v1"
        else: os.environ.pop("TFQ8_DW_INDIRECTION",None)
        t0=time.perf_counter(); f().numpy(); t[k].append((time.perf_counter()-t0)/R)
    m={k:statistics.median(v)*1e3 for k,v in t.items()}
    print(f"b{batch} {h}x{w}x{c} s{s}: new {m['new']:.3f} ms  v1 {m['v1']:.3f} ms  v1/new {m['v1']/m['new']:.2f}", flush=True)
