#include <stdio.h>
int main(void) { puts("linnet"); return 0; }
