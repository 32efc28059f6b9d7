#!/bin/sh
echo "built by llblib-async"
