"""kd.bin"""
